"""`reader-study serve`: binding, the warning off loopback, durability (on SQLite and on
PostgreSQL), no torch."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from study_testkit import build_study, free_port, person, screen, signed_in_headers
from typer.testing import CliRunner

from angiosynth.cli import readerstudy
from angiosynth.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """4 images, all kept."""
    built = build_study(tmp_path_factory.mktemp("serve"), n=4)
    screen(built)
    return built


def _serve(study, monkeypatch, *options: str) -> tuple[object, dict]:
    calls = {}
    monkeypatch.setattr("uvicorn.run", lambda web_app, **kwargs: calls.update(kwargs))
    result = runner.invoke(app, ["reader-study", "serve", str(study.root), *options])
    return result, calls


def test_serve_binds_to_loopback_by_default(study, monkeypatch) -> None:
    result, calls = _serve(study, monkeypatch)

    assert result.exit_code == 0, result.output
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8000
    assert "warning" not in result.output


def test_serve_warns_when_binding_elsewhere(study, monkeypatch) -> None:
    result, calls = _serve(study, monkeypatch, "--host", "0.0.0.0", "--port", "8123")

    assert result.exit_code == 0, result.output
    assert (calls["host"], calls["port"]) == ("0.0.0.0", 8123)
    assert "warning: binding to 0.0.0.0" in result.output


def test_the_access_log_never_shows_tokens(study, monkeypatch) -> None:
    _, calls = _serve(study, monkeypatch)
    config = calls["log_config"]
    token = study.tokens["ann"]
    records = [logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                                 '%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5", "GET", path, "1.1",
                                                             200), None)
               for path in (f"/s/{token}", f"/s/{token}?x=1", "/api/queue")]  # fmt: skip

    redact = config["filters"]["redact_tokens"]["()"]()
    lines = [record.getMessage() for record in records if redact.filter(record)]

    assert all(h["filters"] == ["redact_tokens"] for h in config["handlers"].values())
    assert lines == ['127.0.0.1:5 - "GET /s/[token] HTTP/1.1" 200',
                     '127.0.0.1:5 - "GET /s/[token]?x=1 HTTP/1.1" 200',
                     '127.0.0.1:5 - "GET /api/queue HTTP/1.1" 200']  # fmt: skip


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False),
    ("192.168.1.5", False), ("example.org", False),
])  # fmt: skip
def test_loopback_hosts(host, loopback) -> None:
    assert readerstudy._is_loopback(host) is loopback


_SERVER = """
import sys, uvicorn
from angiosynth.readerstudy import app, export, simulate, storage, study
assert "torch" not in sys.modules, "the reader-study web app must not import torch"
from angiosynth.readerstudy.app import create_app
db_url = sys.argv[3] if len(sys.argv) > 3 else None
uvicorn.run(create_app(sys.argv[1], db_url), host="127.0.0.1", port=int(sys.argv[2]),
            log_level="error")
"""


def _wait_until_up(base_url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()
        try:
            httpx.get(base_url + "/favicon.ico", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server did not start")


def test_killing_the_server_loses_no_answer(tmp_path, study_db) -> None:
    built = build_study(tmp_path, n=4, db_url=study_db)
    screen(built)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    database = [] if built.db_url is None else [built.db_url]
    process = subprocess.Popen([sys.executable, "-c", _SERVER, str(built.root), str(port),
                                *database], stderr=subprocess.PIPE)  # fmt: skip
    try:
        _wait_until_up(base_url, process)
        headers = signed_in_headers(built.tokens["ann"])
        queue = httpx.get(base_url + "/api/queue", headers=headers).json()["images"]
        for i, image_id in enumerate(queue):
            body = {"scores": {"proximal": 1 + i, "medium": 2, "peripheral": "NP"}}
            response = httpx.post(f"{base_url}/api/ratings/{image_id}", json=body, headers=headers)
            assert response.status_code == 200
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stderr.close()

    store = built.store()
    try:
        answers = store.rating_answers(person(store, "ann"))
    finally:
        store.dispose()
    assert [answers[i].scores["proximal"] for i in queue] == ["1", "2", "3", "4"]
