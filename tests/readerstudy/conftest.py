"""Fixtures of the reader-study tests: the database backend, a fresh database per study.

Tests that take `backend` or `study_db` run once per backend: on SQLite (the study's own
study.db) and on PostgreSQL, at ANGIOSYNTH_TEST_POSTGRES_URL (`.ci/run` starts a server with
scripts/postgres.sh); the PostgreSQL cases are skipped when that variable is not set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy.exc import SQLAlchemyError
from study_testkit import BACKENDS, POSTGRES_ENV, Backend, PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The PostgreSQL server of ANGIOSYNTH_TEST_POSTGRES_URL (skips without it, fails when it
    is set but the driver is missing or the server does not answer)."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"PostgreSQL: {POSTGRES_ENV} is not set (`.ci/run` starts a server with "
                    f"scripts/postgres.sh and sets it)")  # fmt: skip
    try:
        server = PostgresServer(url)
    except (ImportError, SQLAlchemyError) as err:
        pytest.fail(f"{POSTGRES_ENV} is set but PostgreSQL cannot be used: {err}", pytrace=False)
    yield server
    server.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    """The database kind of a study: "sqlite", then "postgresql"."""
    if request.param == "postgresql":
        return Backend("postgresql", request.getfixturevalue("postgres_server"))
    return Backend("sqlite")


@pytest.fixture
def study_db(backend: Backend) -> Iterator[str | None]:
    """The `--db` URL of one new study: None (its own SQLite file) or a fresh PostgreSQL
    database, dropped after the test."""
    with backend.database() as url:
        yield url
