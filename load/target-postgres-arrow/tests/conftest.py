from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from embedded_pg import CONFIG, DATABASE, PASSWORD, ROLE, EmbeddedPostgres


@pytest.fixture(scope="session", autouse=True)
def postgres_server() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def db(postgres_server: EmbeddedPostgres) -> Iterator[psycopg.Connection]:
    with psycopg.connect(
        host="127.0.0.1", port=CONFIG["port"], user=ROLE, password=PASSWORD, dbname=DATABASE, autocommit=True
    ) as conn:
        yield conn
