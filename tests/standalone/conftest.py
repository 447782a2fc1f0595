"""The tests of this folder share the session's one ``airflow standalone`` (scheduler,
dag-processor, triggerer, API server, UI): Airflow starts once, not once per module. The test
session's scheduler (tests/conftest.py, ``pytest_xdist_make_scheduler``) runs this folder on one
worker, so the fixture below is made once; it is the package's, so Airflow stops when the folder's
last test is done instead of idling (its scheduler, dag-processor and API server) on that worker
until the session ends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.standalone import Deployment, shared_deployment


@pytest.fixture(scope="package")
def shared_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with shared_deployment(tmp_path_factory.mktemp("standalone")) as deployment:
        yield deployment
