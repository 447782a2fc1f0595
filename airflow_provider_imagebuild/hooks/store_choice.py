"""Which store a pipeline's builds live in: one order, used by every part that opens a store (the
tasks, the watchdog, the UI and its API, the CLI and the doctor), so that they all find the same
builds.

The order, first match wins:

1. a store URL named for the pipeline: the spec's ``store:`` (the CLI's ``--store``);
2. a connection named for it: the spec's ``store_conn_id:`` (the CLI's ``--conn-id``);
3. ``$IMAGEBUILD_STORE_CONN_ID``: the deployment's store connection;
4. ``$IMAGEBUILD_STORE``: the deployment's store URL;
5. the ``imagebuild_default`` connection, when it exists (as the AWS hooks use ``aws_default``);
6. a SQLite file of the machine itself: ``$AIRFLOW_HOME/imagebuild/state.db`` (``~/.imagebuild``
   without ``AIRFLOW_HOME``). It is right for one machine only: under a distributed executor
   (Celery, Kubernetes) each worker would keep builds of its own, so a DAG that would fall back to
   it is refused when it is parsed (:func:`worker_local_refusal`).

Why a connection is looked up with the task SDK's ``Connection.get``: it is Airflow's supported way
to read a connection everywhere this code runs, and it never opens the metadata database from a
task (a task asks the API server through its supervisor; the API server reads its own database;
a shell running the CLI has the ``AIRFLOW_CONN_*`` environment variables and any configured secrets
backend). Airflow is imported only when a connection has to be looked up: the CLI and the doctor
name a store without paying for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.redact.patterns import Redactor, redact_patterns
from airflow_provider_imagebuild.store import BuildStore, open_store, worker_store_url
from airflow_provider_imagebuild.store.url import shown_url

STORE_CONN_ENV = "IMAGEBUILD_STORE_CONN_ID"
STORE_ENV = "IMAGEBUILD_STORE"
DEFAULT_CONN_ID = "imagebuild_default"  # BuildStateHook.default_conn_name

# The rules, as short names a test or a JSON answer can rely on.
NAMED_URL = "named_url"
NAMED_CONN = "named_conn"
ENV_CONN = "env_conn"
ENV_URL = "env_url"
DEFAULT_CONN = "default_conn"
WORKER_FILE = "worker_file"

# Executors that run every task on the scheduler's own machine: a file there is shared by all.
SINGLE_MACHINE_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})
SHARED_STORE_HELP = (
    "name a shared store: the spec's store: (dynamodb://, s3://, azblob://, gs:// or a path every worker "
    f"shares), its store_conn_id:, an {DEFAULT_CONN_ID} connection (type imagebuild_state), or "
    f"${STORE_CONN_ENV} / ${STORE_ENV} on every worker"
)


@dataclass(frozen=True)
class StoreChoice:
    """A store named by a URL or by an ``imagebuild_state`` connection, and the rule that chose it."""

    url: str | None  # a store URL, or None when a connection names it
    conn_id: str | None  # an imagebuild_state connection
    chosen_by: str  # the rule, as a person reads it
    rule: str = NAMED_URL  # the rule, as a short name (NAMED_URL ... WORKER_FILE)

    @property
    def label(self) -> str:
        """How the store is named to a person (the doctor, banners, logs): the connection, or the URL
        without userinfo, query or fragment (:func:`..store.url.shown_url`), secret-looking parts
        redacted."""
        return f"connection {self.conn_id}" if self.conn_id else redact_patterns(shown_url(self.url or ""))

    @property
    def worker_local(self) -> bool:
        """Whether this is the machine's own SQLite file (chosen because nothing else was named)."""
        return self.rule == WORKER_FILE


def connection_exists(conn_id: str) -> bool:
    """Whether Airflow knows the connection, asked the supported way (see the module's docstring)."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        Connection.get(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def choose_store(
    url: str | None = None,
    conn_id: str | None = None,
    *,
    url_from: str = "the spec's store:",
    conn_from: str = "the spec's store_conn_id:",
    env: Mapping[str, str] | None = None,
    exists: Callable[[str], bool] = connection_exists,
) -> StoreChoice:
    """The store for a pipeline that names ``url`` or ``conn_id`` (or neither), in the module's
    order. ``url_from``/``conn_from`` say where those came from (the spec, ``--store``); ``exists``
    answers whether a connection is defined (asked only when the order reaches rule 5)."""
    env = os.environ if env is None else env
    if url:
        return StoreChoice(url, None, url_from, NAMED_URL)
    if conn_id:
        return StoreChoice(None, conn_id, conn_from, NAMED_CONN)
    deployment = env.get(STORE_CONN_ENV)
    if deployment:
        return StoreChoice(None, deployment, f"${STORE_CONN_ENV}, the deployment's store connection", ENV_CONN)
    env_url = env.get(STORE_ENV)
    if env_url:
        return StoreChoice(env_url, None, f"${STORE_ENV}, the deployment's store URL", ENV_URL)
    if exists(DEFAULT_CONN_ID):
        return StoreChoice(None, DEFAULT_CONN_ID, f"the {DEFAULT_CONN_ID} connection, which exists", DEFAULT_CONN)
    where = "$AIRFLOW_HOME/imagebuild" if env.get("AIRFLOW_HOME") else "~/.imagebuild"
    return StoreChoice(
        worker_store_url(env),
        None,
        f"this machine's own SQLite file under {where} (no store named: no store:/store_conn_id:, "
        f"${STORE_CONN_ENV}, ${STORE_ENV} or {DEFAULT_CONN_ID} connection)",
        WORKER_FILE,
    )


def executor_names(setting: str) -> list[str]:
    """The executor classes ``[core] executor`` names: ``CeleryExecutor``, a module path, several
    separated by commas, ``alias:path`` forms and team entries (``team=Executor``)."""
    names = []
    for entry in setting.replace(";", ",").split(","):
        entry = entry.split("=")[-1].strip()
        if entry:
            names.append(entry.split(":")[-1].split(".")[-1].strip())
    return names


def distributed_executor(setting: str | None = None) -> str | None:
    """The first configured executor that runs tasks on other machines (Celery, Kubernetes, Edge,
    a cloud's batch service), else None. An executor not known to run on one machine counts as
    distributed: a build recorded on one worker's disk is lost to the next worker."""
    if setting is None:
        from airflow.sdk.configuration import conf

        setting = str(conf.get("core", "executor", fallback="") or "")
    return next((name for name in executor_names(setting) if name not in SINGLE_MACHINE_EXECUTORS), None)


def worker_local_refusal(
    url: str | None,
    conn_id: str | None,
    *,
    executor: str | None = None,
    env: Mapping[str, str] | None = None,
    exists: Callable[[str], bool] = connection_exists,
) -> str | None:
    """Why a pipeline naming ``url``/``conn_id`` cannot run under the configured executor (None: it
    can): it would fall back to each worker's own SQLite file while its tasks run on several
    machines. ``executor`` is ``[core] executor`` (read from Airflow's configuration when None)."""
    if url or conn_id:  # a store named by the spec: never the fallback (and no look-up at parse time)
        return None
    distributed = distributed_executor(executor)
    if distributed is None:
        return None
    choice = choose_store(env=env, exists=exists)
    if not choice.worker_local:
        return None
    return (
        f"no shared store: with the {distributed} its tasks run on several machines, and each would keep "
        f"its builds in its own SQLite file ({choice.url}), so a cleared task could not resume; {SHARED_STORE_HELP}"
    )


def _field(choice: StoreChoice) -> str:
    """The connection as an error names it: with the rule that named it."""
    return f"connection {choice.conn_id} ({choice.chosen_by})"


def _undefined(choice: StoreChoice) -> InvalidInput:
    return InvalidInput(
        _field(choice),
        f"is not defined here: Airflow finds it neither in AIRFLOW_CONN_{str(choice.conn_id).upper()} "
        "nor in its connections or secrets backend",
    )


def chosen_url(choice: StoreChoice) -> str:
    """The store URL of a choice: its own, or the one its connection holds (read from Airflow)."""
    if choice.url:
        return choice.url
    from airflow.sdk.exceptions import AirflowNotFoundException

    from airflow_provider_imagebuild.hooks.build_state import BuildStateHook

    try:
        return BuildStateHook(str(choice.conn_id)).store_settings()[0]
    except AirflowNotFoundException:
        raise _undefined(choice) from None


def open_choice(choice: StoreChoice, redactor: Redactor | None = None) -> BuildStore:
    """Open the chosen store: a connection through :class:`BuildStateHook` (its AWS, Azure or Google
    credentials), a URL with the environment's credentials. A connection Airflow does not know is
    bad input naming the rule that chose it, not a traceback."""
    if choice.conn_id:
        from airflow.sdk.exceptions import AirflowNotFoundException

        from airflow_provider_imagebuild.hooks.build_state import BuildStateHook

        try:
            return BuildStateHook(choice.conn_id).get_store()
        except AirflowNotFoundException:
            raise _undefined(choice) from None
    return open_store(str(choice.url), redactor=redactor)


def store_for(store_url: str | None = None, store_conn_id: str | None = None) -> BuildStore:
    """A task's store: its spec's ``store`` URL or ``store_conn_id``, else the deployment's, in the
    one order, redacting what Airflow's secrets masker knows besides the patterns."""
    from airflow_provider_imagebuild.hooks.build_state import airflow_redactor

    return open_choice(choose_store(store_url, store_conn_id), redactor=airflow_redactor())
