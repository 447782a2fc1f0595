"""What names and describes a build: ids, names, codes, derived ids, outputs and metadata are
refused at the boundary with the field and the reason, and nothing that could wedge or poison a
build (a newline, a NUL, another script's digit, a secret-looking key) gets through."""

from __future__ import annotations

import itertools

import pytest

from airflow_provider_imagebuild.build.catalog import parse_code, parse_plan
from airflow_provider_imagebuild.build.ids import check_build_id, check_key, check_name, derive_build_id
from airflow_provider_imagebuild.build.values import check_metadata, check_outputs, parse_pairs
from airflow_provider_imagebuild.errors import InvalidInput

CONTROL = ["\n", "\r", "\x00", "\x1b[31m", "\x7f", "\u2028", "\u202e", "\x85"]


@pytest.mark.parametrize("bad", [f"b-1{c}" for c in CONTROL] + ["b-1\n", "é", "b/1", "..", "-x"])
def test_ids_names_and_keys_refuse_control_and_non_ascii(bad: str) -> None:
    for check in (check_build_id, lambda v: check_name(v, "pipeline"), lambda v: check_key(v, "k")):
        with pytest.raises(InvalidInput) as caught:
            check(bad)
        assert "\n" not in str(caught.value) and "\x00" not in str(caught.value)  # shown escaped


@pytest.mark.parametrize("text", ["\u0665", "\uff15", "5\n", "0x5", "1_0", "", " ", "five"])
def test_milestone_codes_are_ascii_digits_only(text: str) -> None:
    with pytest.raises(InvalidInput, match="state"):
        parse_code(text)
    with pytest.raises(InvalidInput):
        parse_plan(f"0,{text},100")


def test_codes_as_typed() -> None:
    assert parse_code("45") == 45 and parse_code(" 5 ") == 5 and parse_plan("0,5,100") == (0, 5, 100)


def test_derived_build_ids_do_not_collide() -> None:
    """Run ids that clean to the same text (``a:b``/``a-b``, ``..``/newline/``é``), and pipeline
    and run boundaries shifted (``a.b`` + ``c`` vs ``a`` + ``b.c``), give different builds."""
    runs = ["a:b", "a-b", "..", "\n", "é", "", "-", "manual__2026-11-27T05:37:02+00:00"]
    runs.append("manual__2026-11-27T05-37-02-00-00")
    derived = {(p, r): derive_build_id(p, r) for p, r in itertools.product(["web", "web.a", "web-a"], runs)}
    derived[("a.b", "c")] = derive_build_id("a.b", "c")
    derived[("a", "b.c")] = derive_build_id("a", "b.c")
    assert len(set(derived.values())) == len(derived), derived
    for build_id in derived.values():
        assert check_build_id(build_id) == build_id
    assert derive_build_id("web", "scheduled__2026-11-27T02:00:00+00:00").startswith("web.scheduled__2026-11-27T02-00")
    assert derive_build_id("web", "r1") == derive_build_id("web", "r1")  # every task of a run agrees
    assert len(derive_build_id("p" * 128, "r" * 300)) <= 128


@pytest.mark.parametrize("value", ["a\x00b", "\x1b]0;title\x07", "x\u202ey", 2**64, float("nan"), float("inf")])
def test_outputs_refuse_values_that_would_poison_later_milestones(value: object) -> None:
    with pytest.raises(InvalidInput, match=r"outputs\.note"):
        check_outputs({"note": value})


@pytest.mark.parametrize("key", ["password", "db_password", "api_key", "AWS_SECRET_ACCESS_KEY", "sessionToken"])
def test_outputs_and_metadata_refuse_secret_looking_keys(key: str) -> None:
    with pytest.raises(InvalidInput, match="looks like a secret"):
        check_outputs({key: "x"})
    with pytest.raises(InvalidInput, match="looks like a secret"):
        check_outputs({"nested": {key: "x"}})
    with pytest.raises(InvalidInput, match="looks like a secret"):
        check_metadata({key: "x"})


def test_outputs_are_bounded_in_total() -> None:
    with pytest.raises(InvalidInput, match=r"outputs: take .* bytes"):
        check_outputs({f"k{i}": "x" * 3000 for i in range(10)})


def test_reserved_metadata_needs_the_lease() -> None:
    with pytest.raises(InvalidInput, match="reserved for the build target"):
        check_metadata({"host_id": "/var/tmp/imagebuild/other/rootfs"})
    assert check_metadata({"host_id": "i-1"}, reserved=True) == {"host_id": "i-1"}


def test_pairs_typed_twice_are_refused() -> None:
    with pytest.raises(InvalidInput, match=r"output\.k: is given twice"):
        parse_pairs(["k=1", "k=2"], "output")
