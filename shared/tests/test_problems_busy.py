"""A locked SQLite database answers 503 + Retry-After (nothing stored, retry), never a 500."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from rnpc_shared.problems import install_problem_handlers


def _app(database: Path) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    engine = create_engine(f"sqlite:///{database}", connect_args={"timeout": 0})  # no waiting: fail on the lock at once

    @app.post("/write")
    def write() -> dict[str, str]:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (1)"))
        return {"stored": "yes"}

    @app.post("/broken")
    def broken() -> dict[str, str]:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO no_such_table VALUES (1)"))
        return {"stored": "yes"}

    return app


def test_locked_database_is_503_with_retry_after_and_other_database_errors_stay_500(tmp_path: Path) -> None:
    database = tmp_path / "busy.db"
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    client = TestClient(_app(database), raise_server_exceptions=False)
    holder.execute("BEGIN EXCLUSIVE")  # another writer holds the lock
    try:
        busy = client.post("/write")
    finally:
        holder.execute("ROLLBACK")
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["type"] == "https://rnpc.example/problems/busy"
    assert client.post("/write").status_code == 200  # the lock released: the same call succeeds
    assert client.post("/broken").status_code == 500  # a real fault is not disguised as "busy"
    holder.close()
