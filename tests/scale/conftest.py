"""Fixtures of the scale suite: many `kaiwa serve` replicas behind HAProxy, as in production.

A cluster (`tests/scale/rig.py`) is a `redis-server` of its own on a free port (so a test may
pause, restart or disconnect it), a fresh PostgreSQL database (dropped afterwards), three replicas
sharing both, and HAProxy running `deploy/haproxy.cfg` in front of them. Modules with the default
settings share one cluster for the session; a module that overrides `scale_env` (module scope,
e.g. `{"KAIWA_LOG_RETENTION": "1"}`) or `replica_count` gets its own. The `cluster` fixture heals
the cluster before each test (Redis up and unpaused, every replica running, HAProxy seeing them
all UP), so a test may kill whatever it likes; each test uses chats of its own.

Needs PostgreSQL on 127.0.0.1:5432 (user postgres; `KAIWA_TEST_POSTGRES` overrides the admin DSN),
and `redis-server` and `haproxy` on the PATH (`apt-get install redis-server haproxy`; nginx for its
one test). Without them the suite is skipped, with the reason — unless
`KAIWA_TEST_REQUIRE_POSTGRES=1` (PostgreSQL) or `KAIWA_TEST_REQUIRE_LOAD_BALANCERS=1` (the
binaries) says they must be there (CI), when it fails instead.

Every test of this directory carries the `scale` marker (`pytest -m "not scale"` leaves them out).
When one fails, the tail of every running process's log is attached to its report.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.scale.rig import (
    Cluster,
    missing_binaries,
    postgres_admin_dsn,
    running_services,
    start_cluster,
)

HERE = Path(__file__).parent
LOG_TAIL_CHARS = 8_000
DEFAULT_REPLICAS = 3


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "scale: many kaiwa replicas behind a load balancer (tests/scale)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.scale)


def _absent(message: str, variable: str) -> None:
    if os.environ.get(variable) == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    try:
        return postgres_admin_dsn()
    except ConnectionError as exc:
        _absent(f"PostgreSQL unreachable: {exc}", "KAIWA_TEST_REQUIRE_POSTGRES")
        raise


@pytest.fixture(scope="session")
def binaries() -> None:
    missing = missing_binaries("redis-server", "haproxy")
    if missing:
        _absent(
            f"{', '.join(missing)} not found (apt-get install redis-server haproxy)",
            "KAIWA_TEST_REQUIRE_LOAD_BALANCERS",
        )


@pytest.fixture(scope="module")
def scale_env() -> dict[str, str]:
    """Settings of this module's replicas, over the rig's (`rig.REPLICA_ENV`)."""
    return {}


@pytest.fixture(scope="module")
def replica_count() -> int:
    return DEFAULT_REPLICAS


@pytest.fixture(scope="session")
def shared_cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_admin: str, binaries: None
) -> Iterator[Cluster]:
    """The cluster of every module that keeps the default settings (starting one takes seconds)."""
    root = tmp_path_factory.mktemp("scale")
    with start_cluster(root, admin_dsn=postgres_admin, replicas=DEFAULT_REPLICAS) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def module_cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_admin: str,
    binaries: None,
    scale_env: dict[str, str],
    replica_count: int,
) -> Iterator[Cluster]:
    """The shared cluster, or one of the module's own when it changed the settings."""
    if not scale_env and replica_count == DEFAULT_REPLICAS:
        yield request.getfixturevalue("shared_cluster")
        return
    root = tmp_path_factory.mktemp("scale")
    with start_cluster(root, admin_dsn=postgres_admin, replicas=replica_count, env=scale_env) as c:
        yield c


@pytest.fixture
def cluster(module_cluster: Cluster) -> Cluster:
    """The module's cluster, healed: whatever the previous test killed runs again."""
    module_cluster.heal()
    return module_cluster


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and HERE in Path(str(item.path)).parents:
        for service in running_services():
            text = service.log_text()
            if len(text) > LOG_TAIL_CHARS:
                text = "…\n" + text[-LOG_TAIL_CHARS:]
            report.sections.append((f"{service.name} log ({service.log_path})", text))
    return report
