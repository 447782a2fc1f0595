"""What a build cost (issue 31): the pricing of attempts, milestones, failures and resumes, on real
:class:`BuildRecord` objects crafted attempt by attempt, so that every figure is worked out by hand
in the test; the prices (shipped examples, a spec's ``cost:`` block) and ``price_of`` for ``gc``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_imagebuild.build.cost import build_cost
from airflow_provider_imagebuild.build.prices import EXAMPLE, SPEC, Prices, example_prices, leak_price, price_of
from airflow_provider_imagebuild.build.record import (
    Attempt,
    BuildRecord,
    Event,
    MilestoneResult,
    check_usage,
    format_ts,
)
from airflow_provider_imagebuild.build.report import build_report
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.spec.pipeline import parse_spec

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=timezone.utc)
# Round figures: 0.1 an hour of t3.micro, 0.001 a GB-hour stored (0.73 x 730 h), 0.05 a GB copied.
PRICES = Prices(host_per_hour={"t3.micro": 0.1}, storage_gb_month=0.73, transfer_gb=0.05)


def at(hours: float) -> str:
    return format_ts(T0 + timedelta(hours=hours))


def attempt(
    state: int, n: int, status: str, start: float, end: float, usage: dict | None, kind: str = "run"
) -> Attempt:
    return Attempt(state, n, status, "w", f"tok-{state}-{n}-{kind}", at(start), at(end), kind=kind, usage=usage)


def done(state: int, n: int, start: float, end: float, outputs: dict | None = None) -> MilestoneResult:
    return MilestoneResult(state, n, "w", at(start), at(end), (end - start) * 3600, outputs or {})


def host(hours: float, **more: float) -> dict:
    return {"host_size": "t3.micro", "host_hours": hours, **more}


def resumed_build(build_id: str = "b-1") -> BuildRecord:
    """Packer's 10 (1 h, a 10 GB checkpoint), 15 (2 h), 20 failing once (0.5 h), the host lost: 15
    replayed (0.25 h) before 20's second attempt (1 h), publish (0.1 h, 20 GB copied); the seal
    deleted the checkpoint at hour 5."""
    rec = BuildRecord(
        build_id=build_id,
        pipeline="web",
        cloud="aws",
        image_type="webserver",
        os="rhel8",
        plan=[0, 10, 15, 20, 100],
        metadata={"checkpoints_discarded": "10@1"},
        created_at=at(0),
        updated_at=at(6),
    )
    rec.attempts = [
        attempt(0, 1, "completed", 0, 0, None),  # registration: never metered
        attempt(10, 1, "completed", 0, 1, host(1.0, checkpoint_gb=10)),
        attempt(15, 1, "completed", 1, 3, host(2.0)),
        attempt(20, 1, "failed", 3, 3.5, host(0.5)),
        attempt(15, 1, "completed", 4, 4.25, host(0.25), kind="replay"),
        attempt(20, 2, "completed", 4.25, 5.25, host(1.0)),
        attempt(100, 1, "completed", 5.5, 5.6, host(0.1, transfer_gb=20)),
    ]
    rec.milestones = {
        0: done(0, 1, 0, 0),
        10: done(10, 1, 0, 1, {"checkpoint_image": "ami-10", "image_id": "ami-10"}),
        15: done(15, 1, 1, 3),
        20: done(20, 2, 4.25, 5.25),
        100: done(100, 1, 5.5, 5.6),
    }
    rec.events = [Event(at(5), "metadata", "checkpoints_discarded", "milestone 95")]
    return rec


def test_a_resumed_build_is_priced_per_milestone_failure_and_resume() -> None:
    cost = build_cost(resumed_build(), PRICES, now=T0 + timedelta(days=30))
    # 10: 1 h host + 10 GB stored for 4 h (hour 1 to its deletion at hour 5, not until now)
    # 15: 2 h + its 0.25 h replay; 20: the failed 0.5 h + 1 h; 100: 0.1 h + 20 GB copied
    assert cost.milestones == {10: 0.14, 15: 0.225, 20: 0.15, 100: 1.01}
    assert cost.total == 1.525
    assert cost.failures == 0.05
    # A rerun from scratch would repeat 10 (0.1) and 15 (0.2); the resume paid the replay (0.025).
    assert cost.saved_by_resumes == 0.275
    assert cost.unmetered_attempts == 0 and cost.currency == "USD"


def test_a_kept_checkpoint_costs_until_now_and_an_unresumed_failure_saves_nothing() -> None:
    rec = resumed_build()
    rec.metadata = {}  # the seal kept it
    rec.attempts = rec.attempts[:4]  # 20 failed, nobody resumed
    rec.milestones = {c: m for c, m in rec.milestones.items() if c <= 15}
    cost = build_cost(rec, PRICES, now=T0 + timedelta(hours=101))
    assert cost.milestones[10] == round(0.1 + 10 * 0.001 * 100, 4)  # stored for 100 h so far
    assert cost.saved_by_resumes == 0.0 and cost.failures == 0.05


def test_an_abandon_ends_the_storage_of_the_checkpoints_it_released() -> None:
    rec = resumed_build()
    rec.metadata = {}  # the seal never ran: the abandon deleted the checkpoint at hour 11
    rec.abandoned_at, rec.released = at(11), ["ami-10"]
    cost = build_cost(rec, PRICES, now=T0 + timedelta(days=30))
    assert cost.milestones[10] == round(0.1 + 10 * 0.001 * 10, 6)  # hour 1 to hour 11


def test_attempts_without_usage_are_counted_not_guessed() -> None:
    rec = resumed_build()
    rec.attempts[2].usage = None  # recorded from a shell with `imagebuild build complete`
    cost = build_cost(rec, PRICES, now=T0 + timedelta(days=1))
    assert cost.unmetered_attempts == 1 and cost.milestones[15] == 0.025
    assert cost.saved_by_resumes == 0.075  # 10's 0.1 less the replay's 0.025


def test_unknown_prices_leave_usage_unpriced() -> None:
    cost = build_cost(resumed_build(), Prices(), now=T0 + timedelta(days=1))  # a private cloud, no cost block
    assert cost.total == 0.0 and cost.milestones == {10: 0.0, 15: 0.0, 20: 0.0, 100: 0.0}


def test_the_report_gives_cost_per_build_per_milestone_failures_and_savings() -> None:
    cheap = resumed_build("b-2")
    for a in cheap.attempts:
        if a.usage:
            a.usage = {**a.usage, "host_size": "t3.nano"}  # not listed: the default price, none here
    report = build_report([resumed_build("b-1"), cheap], now=T0 + timedelta(days=1), prices_of=lambda rec: PRICES)
    assert report["cost"]["per_build"] == {"b-1": 1.525, "b-2": 1.04}  # b-2: storage and transfer only
    assert report["cost"]["total"] == 2.565 and report["cost"]["currency"] == "USD"
    assert (report["cost"]["p50"], report["cost"]["p90"]) == (1.2825, 1.4765)
    assert report["cost"]["prices"] == {"web": EXAMPLE} and report["cost"]["unmetered_attempts"] == 0
    by_code = {m["code"]: m for m in report["milestones"]}
    assert (by_code[15]["cost_p50"], by_code[15]["cost_p90"]) == (0.1125, 0.2025)
    assert by_code[100]["cost_p50"] == 1.005  # 1.01 and 1.0
    assert report["cost_of_failures"] == 0.05
    assert report["cost_saved_by_resumes"] == 0.275
    default = build_report([resumed_build()], now=T0 + timedelta(days=1))  # aws's example prices
    assert default["cost"]["per_build"]["b-1"] > 0


def test_a_specs_cost_block_replaces_the_examples_key_by_key() -> None:
    spec = parse_spec(
        {
            "pipeline": "web",
            "cloud": "aws",
            "image_type": "webserver",
            "cost": {"currency": "EUR", "host_per_hour": {"t3.micro": 0.5}, "transfer_gb": 0},
        }
    )
    assert spec.cost is not None
    prices = spec.cost.prices("aws")
    aws = example_prices("aws")
    assert prices.source == SPEC and aws.source == EXAMPLE and prices.currency == "EUR"
    assert prices.host_hourly("t3.micro") == 0.5 and prices.host_hourly("m5.large") == aws.host_hourly("m5.large")
    assert prices.storage_gb_month == aws.storage_gb_month and prices.transfer_gb == 0.0
    refused = [
        ({"transfer_gb": -1}, "transfer_gb"),
        ({"currency": "dollars"}, "currency"),
        ({"host_per_hour": {"t3.micro": "cheap"}}, "host_per_hour"),
        ({"per_gb": 1}, "per_gb"),
    ]
    for bad, field in refused:
        with pytest.raises(ValueError, match=field):
            parse_spec({"pipeline": "web", "cloud": "aws", "image_type": "webserver", "cost": bad})


def test_price_of_estimates_what_a_leaked_resource_costs_an_hour() -> None:
    assert price_of({"cloud": "aws", "kind": "instance", "size": "t3.micro"}) == 0.0104
    assert price_of({"cloud": "aws", "kind": "snapshot", "gb": 73}) == pytest.approx(73 * 0.05 / 730)
    assert price_of({"cloud": "aws", "kind": "instance", "size": "x"}, PRICES) is None  # no default price
    assert price_of({"cloud": "azure", "kind": "nic"}) is None  # no price known: None, not zero
    assert price_of({"cloud": "vsphere", "kind": "vm", "size": "4cpu"}) is None
    assert price_of({"cloud": "aws", "kind": "volume"}) is None  # size unknown
    from airflow_provider_imagebuild.targets.leaks import Resource  # what gc's hook is given

    leaked = Resource("instance", "i-1", "us-east-1", "web", "b-1", None, size="m5.large")
    assert leak_price("aws", leaked) == 0.096
    image = Resource("image", "img", "us", "web", "b-1", None, gb=10)
    assert leak_price("gcp", image) == pytest.approx(10 * 0.05 / 730)
    from airflow_provider_imagebuild.targets.leaks import estimated_cost

    for gb in (1e308, float("nan"), -5.0):  # what a cloud (or a fake) may report as an image's size
        odd = Resource("image", "img", "us", "web", "b-1", None, gb=gb)
        assert estimated_cost("aws", odd, timedelta(days=3000), leak_price) is None  # not Infinity in the JSON
    assert estimated_cost("gcp", image, timedelta(hours=730), leak_price) == pytest.approx(0.5)


def test_usage_is_checked_before_it_is_stored() -> None:
    assert check_usage({"host_size": "t3.micro", "host_hours": 1, "checkpoint_gb": None}) == {
        "host_size": "t3.micro",
        "host_hours": 1.0,
    }
    refused = [
        ({"cpu": 1}, "usage.cpu"),
        ({"host_hours": -1}, "usage.host_hours"),
        ({"host_hours": True}, "usage.host_hours"),
        ({"host_size": "x" * 65}, "usage.host_size"),
        ({"transfer_gb": float("nan")}, "usage.transfer_gb"),
    ]
    for bad, field in refused:
        with pytest.raises(InvalidInput, match=field.replace(".", r"\.")):
            check_usage(bad)
