"""Which published images retention retires, and why each other stays: the pure rules of
build/image_retention.py on records made by the store's own rules, at chosen times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow_provider_imagebuild.build import rules
from airflow_provider_imagebuild.build.identity import BuildIdentity
from airflow_provider_imagebuild.build.image_retention import DeliveredAgain, PublishedImage, delivered_again, judge
from airflow_provider_imagebuild.build.record import BuildRecord

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
PLAN = [0, 95, 100]


def delivered(build_id: str, day: int) -> BuildRecord:
    """A build delivered on day ``day`` after T0."""
    at = T0 + timedelta(days=day)
    rec = rules.new_record(build_id, BuildIdentity.checked("web", "aws", "base", "", PLAN), "test", at)
    for code in (95, 100):
        lease, _ = rules.begin(rec, code, "w", 300, at)
        rules.complete(rec, code, lease.token, {}, at)
    return rec


def failed_at_publish(build_id: str, day: int) -> BuildRecord:
    at = T0 + timedelta(days=day)
    rec = rules.new_record(build_id, BuildIdentity.checked("web", "aws", "base", "", PLAN), "test", at)
    lease, _ = rules.begin(rec, 95, "w", 300, at)
    rules.complete(rec, 95, lease.token, {}, at)
    lease, _ = rules.begin(rec, 100, "w", 300, at)
    rules.fail(rec, 100, lease.token, "copy to eu-west-1 failed", at)
    return rec


def image(build_id: str, day: float, region: str = "us-east-1", known_time: bool = True) -> PublishedImage:
    when = T0 + timedelta(days=day) if known_time else None
    return PublishedImage(f"ami-{build_id}-{region}", region, build_id, when)


def verdicts(found: list[tuple[PublishedImage, BuildRecord | None]], day: int, **policy: object) -> dict[str, str]:
    got = judge(found, T0 + timedelta(days=day), **policy)  # type: ignore[arg-type]
    return {v.image.id: ("retire: " if v.retire else "keep: ") + v.why for v in got}


def test_keep_last_keeps_the_newest_builds_images_in_every_region_and_retires_the_rest() -> None:
    builds = {n: delivered(f"b{n}", n) for n in range(1, 5)}
    found = [(image(f"b{n}", n, region), builds[n]) for n in builds for region in ("us-east-1", "eu-west-1")]
    got = verdicts(found, 10, keep_last=2, keep_days=None)
    assert got["ami-b4-us-east-1"].startswith("keep: the newest delivered image")
    assert got["ami-b3-eu-west-1"] == "keep: one of the 2 newest delivered builds' (keep_last)"
    assert got["ami-b2-us-east-1"] == "retire: beyond the 2 newest delivered builds"
    assert got["ami-b1-eu-west-1"].startswith("retire:")


def test_an_image_goes_only_past_both_keep_last_and_keep_days() -> None:
    builds = {n: delivered(f"b{n}", n) for n in (1, 20, 25)}
    found = [(image(f"b{n}", n), builds[n]) for n in builds]
    got = verdicts(found, 30, keep_last=1, keep_days=timedelta(days=14))
    assert got["ami-b20-us-east-1"] == "keep: published 10.0 days ago, within keep_days (14.0 days)"
    assert got["ami-b1-us-east-1"] == "retire: beyond the 1 newest delivered builds; published 29.0 days ago, past " \
        "keep_days (14.0 days)"  # fmt: skip
    only_days = verdicts(found, 30, keep_last=None, keep_days=timedelta(days=4))
    assert only_days["ami-b25-us-east-1"].startswith("keep: the newest delivered image")  # whatever its age
    assert only_days["ami-b20-us-east-1"].startswith("retire: published 10.0 days ago")


def test_a_referenced_image_an_unfinished_builds_and_an_unknown_age_stay() -> None:
    old, newest, halfway = delivered("b1", 1), delivered("b5", 5), failed_at_publish("b3", 3)
    found = [(image("b1", 1), old), (image("b1", 1, "eu-west-1"), old), (image("b3", 3), halfway),
             (image("b5", 5), newest), (image("b2", 2, known_time=False), delivered("b2", 2))]  # fmt: skip
    refs = {"ami-b1-eu-west-1": "SSM parameter /imagebuild/web/image_id in eu-west-1"}
    got = verdicts(found, 40, keep_last=1, keep_days=None, references=refs)
    assert got["ami-b1-eu-west-1"] == "keep: still referenced by SSM parameter /imagebuild/web/image_id in eu-west-1"
    assert got["ami-b1-us-east-1"].startswith("retire:")
    assert got["ami-b3-us-east-1"].startswith("keep: build b3 is failed, not delivered: a resume may still publish it")
    # the record's delivery time ranks it, not the image's (unknown) creation time
    assert got["ami-b2-us-east-1"].startswith("retire:")
    unknown_age = verdicts([(image("b2", 2, known_time=False), None), (image("b5", 5), newest)], 40,
                           keep_last=None, keep_days=timedelta(days=7))  # fmt: skip
    assert unknown_age["ami-b2-us-east-1"].startswith("keep: when it was published is unknown")


def test_an_unknown_builds_images_count_as_delivered_and_an_abandoned_builds_do_not() -> None:
    newest = delivered("b9", 9)
    given_up = failed_at_publish("b8", 8)
    rules.abandon(given_up, "gave up", "test", T0 + timedelta(days=8))
    found = [(image("b9", 9), newest), (image("b8", 8), given_up), (image("b7", 7), None), (image("b6", 6), None)]
    got = verdicts(found, 20, keep_last=2, keep_days=None)
    assert got["ami-b8-us-east-1"] == "retire: build b8 was abandoned"
    assert got["ami-b7-us-east-1"] == "keep: one of the 2 newest delivered builds' (keep_last)"
    assert got["ami-b6-us-east-1"] == "retire: build b6 is unknown to the store; beyond the 2 newest delivered builds"
    # a build tag no build of ours could write (a hand-made tag, a control character) is left alone
    odd = PublishedImage("ami-odd", "us-east-1", "b\n1", T0)
    assert verdicts([(odd, None), *found], 20, keep_last=1, keep_days=None)["ami-odd"] == (
        "keep: its build tag 'b\\n1' is not a build id"
    )
    # an image of an unknown build newer than any delivered one is the newest published one: kept
    assert verdicts([(image("b10", 10), None), (image("b9", 9), newest)], 20, keep_last=1, keep_days=None)[
        "ami-b10-us-east-1"
    ].startswith("keep: the newest published image")


def delivered_again_by(build_id: str, source: BuildRecord, day: int) -> BuildRecord:
    """A build that found nothing changed on day ``day``: every milestone reused from ``source``
    (rules.reuse, as operators/reuse.py records it), delivering ``source``'s images again."""
    at = T0 + timedelta(days=day)
    rec = rules.new_record(build_id, BuildIdentity.checked("web", "aws", "base", "", PLAN), "test", at)
    lease, _ = rules.begin(rec, 95, "w", 300, at)
    taken = [(c, dict(source.milestones[c].outputs), ("0" * 64, {"previous": ""})) for c in (95, 100)]
    rules.reuse(rec, 95, lease.token, source.build_id, taken, at)
    return rec


def test_an_image_a_newer_build_delivered_again_counts_as_delivered_then() -> None:
    """b1's image was delivered again on day 20 by b20 (nothing changed since b1, #32), after b5
    and b15 built their own: b1's image is what the newest delivered build delivers, and for
    keep_last and keep_days it counts as delivered on day 20. Also through a build that reused b20
    (its outputs name b1's images) and once b1's record is pruned (its images then unknown)."""
    b1, b5, b15 = delivered("b1", 1), delivered("b5", 5), delivered("b15", 15)
    b20 = delivered_again_by("b20", b1, 20)
    records = [b1, b5, b15, b20]
    again = delivered_again(records)
    assert again == {"b1": DeliveredAgain("b20", T0 + timedelta(days=20))}
    found = [(image("b1", 1), b1), (image("b5", 5), b5), (image("b15", 15), b15)]
    got = verdicts(found, 25, keep_last=1, keep_days=None, again=again)
    assert got["ami-b1-us-east-1"] == "keep: the newest delivered image (build b1; delivered again by build b20)"
    assert got["ami-b15-us-east-1"].startswith("retire: beyond the 1 newest delivered builds")
    two = verdicts(found, 25, keep_last=2, keep_days=None, again=again)
    assert two["ami-b15-us-east-1"] == "keep: one of the 2 newest delivered builds' (keep_last)"
    assert two["ami-b5-us-east-1"].startswith("retire:")
    # b22 built for real after: b1's image is no longer the newest, but was in use 5 days ago
    b22 = delivered("b22", 22)
    again = delivered_again([*records, b22])
    found.append((image("b22", 22), b22))
    days = verdicts(found, 25, keep_last=None, keep_days=timedelta(days=10), again=again)
    assert days["ami-b1-us-east-1"] == "keep: delivered again by build b20 5.0 days ago, within keep_days (10.0 days)"
    assert days["ami-b5-us-east-1"].startswith("retire: published 20.0 days ago")
    later = verdicts(found, 40, keep_last=None, keep_days=timedelta(days=10), again=again)
    assert later["ami-b1-us-east-1"] == "retire: delivered again by build b20 20.0 days ago, past keep_days (10.0 days)"
    # b30 reused b20, which reused b1: b1's images again, b1's record pruned meanwhile
    b30 = delivered_again_by("b30", b20, 30)
    again = delivered_again([b5, b15, b20, b22, b30])
    assert again == {"b1": DeliveredAgain("b30", T0 + timedelta(days=30))}
    pruned = [(image("b1", 1), None), (image("b22", 22), b22)]
    assert verdicts(pruned, 31, keep_last=1, keep_days=None, again=again)["ami-b1-us-east-1"] == (
        "keep: the newest delivered image (build b1; delivered again by build b30)"
    )
    # a chain that loops (records written by hand) ends, naming no build
    x, y = delivered_again_by("x", b1, 3), delivered_again_by("y", b1, 4)
    x.attempts[-1].reused_from, y.attempts[-1].reused_from = (
        {"build_id": "y", "state": 100},
        {"build_id": "x", "state": 100},
    )
    assert delivered_again([x, y]) == {}
