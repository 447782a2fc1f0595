"""One store order for every part (hooks/store_choice.py), the ``imagebuild_default`` connection
included, and a ``file://`` store that does not exist read as an error, not as "0 builds"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_imagebuild.errors import InvalidInput, NotFound, StoreUnavailable
from airflow_provider_imagebuild.hooks.store_choice import (
    DEFAULT_CONN,
    ENV_CONN,
    ENV_URL,
    NAMED_CONN,
    NAMED_URL,
    WORKER_FILE,
    StoreChoice,
    choose_store,
    open_choice,
)
from airflow_provider_imagebuild.store import open_store

ORDER_VARS = ("IMAGEBUILD_STORE", "IMAGEBUILD_STORE_CONN_ID", "AIRFLOW_CONN_IMAGEBUILD_DEFAULT", "AIRFLOW_CONN_STATE")


def connection(url: str) -> str:
    return json.dumps({"conn_type": "imagebuild_state", "extra": {"store_url": url}})


def test_every_rule_of_the_order_in_turn_and_a_task_opens_what_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rules are switched on from the last to the first; each time the first one wins, and the
    store a task opens (store_for) and the choice's own opening are that store."""
    from airflow_provider_imagebuild.hooks.store_choice import store_for

    for name in ORDER_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    url = {rule: f"sqlite:///{tmp_path}/{rule}.db" for rule in (NAMED_URL, NAMED_CONN, ENV_CONN, ENV_URL, DEFAULT_CONN)}

    def check(rule: str, expected_url: str, spec_store: str | None = None, spec_conn: str | None = None) -> None:
        choice = choose_store(spec_store, spec_conn)
        assert choice.rule == rule, (rule, choice)
        assert store_for(spec_store, spec_conn).url == expected_url, rule
        assert open_choice(choice).url == expected_url, rule

    check(WORKER_FILE, f"sqlite:///{tmp_path}/home/imagebuild/state.db")
    monkeypatch.setenv("AIRFLOW_CONN_IMAGEBUILD_DEFAULT", connection(url[DEFAULT_CONN]))
    check(DEFAULT_CONN, url[DEFAULT_CONN])  # used when it exists, as aws_default is
    monkeypatch.setenv("IMAGEBUILD_STORE", url[ENV_URL])
    check(ENV_URL, url[ENV_URL])
    monkeypatch.setenv("AIRFLOW_CONN_DEPLOYMENT", connection(url[ENV_CONN]))
    monkeypatch.setenv("IMAGEBUILD_STORE_CONN_ID", "deployment")
    check(ENV_CONN, url[ENV_CONN])
    monkeypatch.setenv("AIRFLOW_CONN_STATE", connection(url[NAMED_CONN]))
    check(NAMED_CONN, url[NAMED_CONN], spec_conn="state")
    check(NAMED_URL, url[NAMED_URL], spec_store=url[NAMED_URL])


def test_a_connection_airflow_does_not_know_is_named_with_the_rule_that_chose_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_imagebuild.hooks.store_choice import store_for

    monkeypatch.setenv("IMAGEBUILD_STORE_CONN_ID", "nowhere")
    monkeypatch.delenv("AIRFLOW_CONN_NOWHERE", raising=False)
    with pytest.raises(InvalidInput, match=r"connection nowhere \(\$IMAGEBUILD_STORE_CONN_ID.*\): is not defined"):
        store_for()


def test_a_file_store_that_does_not_exist_is_an_error_naming_its_path_until_init(tmp_path: Path) -> None:
    folder = tmp_path / "typo" / "state"
    store = open_store(f"file://{folder}")
    with pytest.raises(StoreUnavailable, match=f"the folder {folder} does not exist.*store init"):
        store.scan_builds()
    with pytest.raises(NotFound, match=f"build b-1 not found: .*{folder}"):
        store.get("b-1")
    assert not folder.exists()  # reading created nothing
    assert "created" in store.init()
    assert store.scan_builds() == ([], [])
    (folder / "builds").rmdir()
    with pytest.raises(StoreUnavailable, match=f"the folder {folder / 'builds'} does not exist"):
        store.list_builds()
    store.create_build("b-1", pipeline="p", cloud="local", image_type="t")  # a first write creates it, as SQLite's
    assert [r.build_id for r in store.list_builds()] == ["b-1"]


def test_a_store_is_shown_without_userinfo_query_or_fragment() -> None:
    """A store URL's query, userinfo and fragment can carry credentials or tokens (pasted from a
    console, or refused later by the parser): the label the doctor, the banners and the logs show
    keeps scheme, host and path only, before the URL is parsed and whether or not it parses."""
    from airflow_provider_imagebuild.doctor.store import examine_store
    from airflow_provider_imagebuild.hooks.deployment_stores import store_label

    shown = {
        "s3://bucket/pre?region=eu-west-1&token=tok3n&X-Amz-Signature=s1gn": "s3://bucket/pre",
        "dynamodb://admin:pa55w0rd@builds?region=us-east-1#tok3n": "dynamodb://builds",
        "sqlite:////srv/u@host/state.db?synchronous=full": "sqlite:////srv/u@host/state.db",
        "gs://b/p?project=proj-1&access_token=tok3n": "gs://b/p",
    }
    for url, label in shown.items():
        choice = StoreChoice(url, None, "--store")
        assert choice.label == label == store_label(choice, url)
    entry, finding = examine_store(StoreChoice("s3://bucket/pre?token=tok3n", None, "--store"), ["p"], probe=False)
    assert entry["store"] == "s3://bucket/pre" and "tok3n" not in repr(entry) + repr(finding), (entry, finding)
