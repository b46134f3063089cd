"""Shared fixtures: one live gateway per session, started as a real subprocess."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from tests.support.postgres import Cluster, start_cluster
from tests.support.server import LiveServer, run_server

pytest_plugins = ["tests.support.report_guard"]
FIXTURES = Path(__file__).parent / "fixtures"
POSTGRES_ENV = "SLIPSTREAM_TEST_POSTGRES_URL"


def pytest_configure(config: pytest.Config) -> None:
    """Start PostgreSQL before collection, since store tests are parametrized by backend."""
    if os.environ.get(POSTGRES_ENV) or os.environ.get("SLIPSTREAM_TEST_NO_POSTGRES"):
        return
    cluster = start_cluster()
    if cluster is not None:
        config.stash[_CLUSTER] = cluster
        os.environ[POSTGRES_ENV] = cluster.url


def pytest_unconfigure(config: pytest.Config) -> None:
    cluster = config.stash.get(_CLUSTER, None)
    if cluster is not None:
        cluster.stop()


_CLUSTER = pytest.StashKey[Cluster]()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with run_server(tmp_path_factory.mktemp("gateway"), FIXTURES / "catalog.yaml") as server:
        yield server


@pytest.fixture(scope="session")
def model_key(live_server: LiveServer) -> str:
    return live_server.create_key("suite")[1]


@pytest.fixture(scope="session")
def client(live_server: LiveServer, model_key: str) -> OpenAI:
    return OpenAI(base_url=live_server.openai_base, api_key=model_key, max_retries=0, timeout=120)
