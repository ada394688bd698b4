"""Serving to real raters: body limit and authentication before parsing, stalled requests,
NaN and unexpected errors, the reverse proxy (--public-url), switching between persons."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from study_testkit import BuiltStudy, build_study, copy_study, free_port, screen
from typer.testing import CliRunner

from angiosynth.cli.main import app as cli
from angiosynth.readerstudy.app import COOKIE_NAME, CSRF_HEADER, create_app, csrf_token
from angiosynth.readerstudy.export import ratings_table

runner = CliRunner()
PUBLIC_URL = "https://study.example.org"
#: The Host header nginx sends by default (proxy_set_header Host $proxy_host).
PROXIED_HOST = "127.0.0.1:8000"
SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options",
                    "referrer-policy", "cross-origin-resource-policy")  # fmt: skip


@pytest.fixture(scope="module")
def screened(tmp_path_factory) -> BuiltStudy:
    """4 images, all kept."""
    built = build_study(tmp_path_factory.mktemp("hardening"), n=4)
    screen(built)
    return built


@pytest.fixture
def study(screened, tmp_path) -> BuiltStudy:
    """A fresh copy of the screened study."""
    return copy_study(screened, tmp_path / "study")


@pytest.fixture
def apps():
    """Disposes of the stores of the apps a test appends."""
    made = []
    yield made
    for web_app in made:
        web_app.state.study.store.dispose()


@pytest.fixture
def app(study, apps):
    """The web app of the study copy (no public URL)."""
    apps.append(create_app(study.root))
    return apps[-1]


def served(study: BuiltStudy, monkeypatch, apps: list, *options: str) -> tuple[object, dict]:
    """The app and uvicorn settings that `reader-study serve STUDY OPTIONS` would run."""
    calls: dict = {}
    monkeypatch.setattr("uvicorn.run", lambda web_app, **kw: calls.update(kw, app=web_app))
    result = runner.invoke(cli, ["reader-study", "serve", str(study.root), *options])
    assert result.exit_code == 0, result.output
    apps.append(calls.pop("app"))
    return apps[-1], calls


@contextmanager
def running(web_app, settings: dict) -> Iterator[int]:
    """Runs the app under uvicorn with the settings of `serve` on a free port; yields it."""
    kept = {k: v for k, v in settings.items() if k not in ("host", "port", "log_config")}
    port = free_port()
    config = uvicorn.Config(web_app, **{**kept, "host": "127.0.0.1", "port": port,
                                        "log_level": "warning"})  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def client(web_app, token: str | None = None, **kwargs) -> TestClient:
    """A client that sees 500s as responses, signed in with `token` (the cookie) if given."""
    made = TestClient(web_app, raise_server_exceptions=False, **kwargs)
    if token is not None:
        made.cookies.set(COOKIE_NAME, token)
    return made


def post_raw(web_app_client: TestClient, path: str, content, token: str, **headers: str):
    """A POST of raw bytes as JSON with the CSRF header of `token`."""
    return web_app_client.post(path, content=content, headers={
        "Content-Type": "application/json", CSRF_HEADER: csrf_token(token), **headers})  # fmt: skip


def first_image(web_app, token: str) -> str:
    """The first image id of a person's queue."""
    return client(web_app, token).get("/api/queue").json()["images"][0]


def assert_security_headers(response) -> None:
    missing = [name for name in SECURITY_HEADERS if name not in response.headers]
    assert missing == [], f"{response.status_code} lacks {missing}"
    assert response.headers.get("cache-control") == "no-store"


def raw_request(port: int, data: bytes, wait: float = 5.0) -> bytes:
    """Sends raw bytes and reads until the server closes the connection or `wait` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except TimeoutError:
            pytest.fail(f"no answer within {wait} s (got {answer[:80]!r})")
        return answer


# 1. the body limit, authentication before parsing, stalled requests


def test_a_declared_oversized_body_is_refused_before_it_is_read(study, monkeypatch, apps) -> None:
    web_app, settings = served(study, monkeypatch, apps)
    with running(web_app, settings) as port:
        head = (f"POST /api/ratings/0123456789abcdef HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n")  # fmt: skip
        answer = raw_request(port, head.encode())  # and not one byte of the 100 MB

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"too large" in answer and b"content-security-policy" in answer.lower()


def test_a_streamed_body_is_cut_at_the_limit(app, study) -> None:
    token = study.tokens["ann"]
    path = f"/api/ratings/{first_image(app, token)}"
    padding = b'{"scores": {"proximal": 3}, "external": false' + b" " * (1 << 20) + b"}"

    def chunks():
        for start in range(0, len(padding), 4096):
            yield padding[start : start + 4096]

    streamed = post_raw(client(app, token), path, chunks(), token)  # chunked, no length
    declared = post_raw(client(app, token), path, padding, token)

    for response in (streamed, declared):
        assert response.status_code == 413, response.text
        assert "too large" in response.json()["detail"]
        assert_security_headers(response)
    assert ratings_table(app.state.study.store).empty


@pytest.mark.parametrize("content", [b"{not json", b'{"keep": NaN}', b"", b"[" * 5000])
def test_the_token_is_checked_before_the_body_is_parsed(app, study, content) -> None:
    image_id = first_image(app, study.tokens["sam"])
    path = f"/api/screening/{image_id}"
    forged = study.tokens["sam"][:-2] + "xx"

    anonymous = client(app).post(path, content=content,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    wrong_token = post_raw(client(app, forged), path, content, forged)
    wrong_role = post_raw(client(app, study.tokens["ann"]), path, content, study.tokens["ann"])
    no_csrf = client(app, study.tokens["sam"]).post(
        path, content=content, headers={"Content-Type": "application/json"}
    )

    assert (anonymous.status_code, wrong_token.status_code) == (401, 401)
    assert "personal link" in anonymous.json()["detail"]
    assert wrong_role.status_code == 403 and no_csrf.status_code == 403


def test_no_byte_of_the_body_is_received_before_authentication(app) -> None:
    received: list[dict] = []
    sent: list[dict] = []

    async def receive() -> dict:
        received.append({"type": "http.request"})
        return {"type": "http.request", "body": b'{"keep": true}', "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/api/screening/0123456789abcdef",
             "raw_path": b"/api/screening/0123456789abcdef", "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                         (b"content-length", b"14")], "state": {}}  # fmt: skip
    asyncio.run(app(scope, receive, send))

    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 401
    assert received == []


@pytest.mark.slow
def test_stalled_requests_are_closed(study, monkeypatch, apps) -> None:
    web_app, settings = served(study, monkeypatch, apps)
    token = study.tokens["ann"]
    host = "Host: 127.0.0.1\r\n"
    stalls = {
        "silent": b"",
        "headers": b"GET /api/queue HTTP/1.1\r\n" + host.encode() + b"X-Slow: 1\r\n",
        "body": (f"POST /api/ratings/0123456789abcdef HTTP/1.1\r\n{host}"
                 f"Cookie: {COOKIE_NAME}={token}\r\n{CSRF_HEADER}: {csrf_token(token)}\r\n"
                 "Content-Type: application/json\r\nContent-Length: 40\r\n\r\n"
                 '{"scores"').encode(),
    }  # fmt: skip
    closed_after = {}
    with running(web_app, settings) as port:
        sockets = {name: socket.create_connection(("127.0.0.1", port)) for name in stalls}
        start = time.monotonic()
        for name, sock in sockets.items():
            sock.sendall(stalls[name])
        for name, sock in sockets.items():
            sock.settimeout(max(0.1, start + 20 - time.monotonic()))
            try:
                while sock.recv(4096):
                    pass
                closed_after[name] = time.monotonic() - start
            except (TimeoutError, ConnectionResetError) as error:
                closed_after[name] = error
            finally:
                sock.close()
        fine = httpx.get(f"http://127.0.0.1:{port}/api/queue",
                         cookies={COOKIE_NAME: token})  # fmt: skip

    assert all(isinstance(t, float) and t < 15 for t in closed_after.values()), closed_after
    assert fine.status_code == 200


# 2. NaN and Infinity, unexpected errors


@pytest.mark.parametrize(("who", "content"), [
    ("ann", b'{"scores": {"proximal": NaN}}'), ("ann", b'{"scores": {"proximal": Infinity}}'),
    ("ann", b'{"scores": {"medium": -Infinity}}'), ("ann", b'{"scores": {"proximal": 1e999}}'),
    ("sam", b'{"keep": NaN}'), ("sam", b'{"keep": true, "x": NaN}'),
])  # fmt: skip
def test_nan_and_infinity_are_refused_with_a_message(app, study, who, content) -> None:
    token = study.tokens[who]
    kind = "screening" if who == "sam" else "ratings"

    response = post_raw(client(app, token), f"/api/{kind}/{first_image(app, token)}", content,
                        token)  # fmt: skip

    assert response.status_code == 422, response.text
    assert "JSON" in response.json()["detail"]
    assert_security_headers(response)


@pytest.mark.parametrize("content", [
    b"{", b"[" * 5000, b'{"keep": "\xff"}', b'{"keep": 1' + b"0" * 5000 + b"}", b"[true]",
    b'{"keep": "yes"}',
])  # fmt: skip
def test_malformed_bodies_get_a_one_line_message(app, study, content) -> None:
    token = study.tokens["sam"]

    response = post_raw(client(app, token), f"/api/screening/{first_image(app, token)}",
                        content, token)  # fmt: skip

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and len(detail) < 300


def test_unexpected_errors_answer_500_with_the_security_headers(app, study, monkeypatch) -> None:
    def broken(person):
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.state.study.store, "queue", broken)

    response = client(app, study.tokens["ann"]).get("/api/queue")

    assert response.status_code == 500
    assert response.json() == {"detail": "internal server error"}
    assert_security_headers(response)


def test_every_error_carries_the_security_headers(app, study) -> None:
    anonymous, ann = client(app), client(app, study.tokens["ann"])
    for response in (anonymous.get("/api/queue"), ann.get("/admin"), ann.get("/nowhere"),
                     ann.get("/api/images/0123456789abcdef"),
                     anonymous.post("/s/x", content=b"x" * 100_000)):  # fmt: skip
        assert response.status_code >= 400
        assert_security_headers(response)


# 5. behind a reverse proxy: --public-url


def test_behind_a_proxy_answers_are_accepted_with_the_public_url(study, monkeypatch,
                                                                 apps) -> None:  # fmt: skip
    web_app, _ = served(study, monkeypatch, apps, "--public-url", PUBLIC_URL)
    token = study.tokens["ann"]
    signed_in = client(web_app, base_url=f"http://{PROXIED_HOST}").get(
        f"/s/{token}", follow_redirects=False
    )
    proxied = client(web_app, token, base_url=f"http://{PROXIED_HOST}")  # the https cookie
    image_id = proxied.get("/api/queue").json()["images"][0]
    path, body = f"/api/ratings/{image_id}", b'{"scores": {"proximal": 3}}'

    from_public = post_raw(proxied, path, body, token, Origin=PUBLIC_URL)
    from_elsewhere = [post_raw(proxied, path, body, token, Origin=origin).status_code
                      for origin in (f"http://{PROXIED_HOST}", "https://evil.example",
                                     "http://study.example.org")]  # fmt: skip

    assert signed_in.status_code == 303
    assert "secure" in signed_in.headers["set-cookie"].lower()
    assert from_public.status_code == 200, from_public.text
    assert from_elsewhere == [403, 403, 403]


def test_the_public_url_is_the_only_host_answered(study, monkeypatch, apps) -> None:
    web_app, _ = served(study, monkeypatch, apps, "--public-url", PUBLIC_URL + ":443/")
    token = study.tokens["ann"]

    for host in ("study.example.org", PROXIED_HOST, "localhost:8000"):
        assert client(web_app, token, base_url=f"http://{host}").get("/rate").status_code == 200
    for host in ("evil.example", "study.example.org.evil.example", "10.0.0.5:8000"):
        response = client(web_app, token, base_url=f"http://{host}").get("/rate/")
        assert response.status_code == 400, host
        assert_security_headers(response)


def test_the_host_header_is_never_echoed(app, study) -> None:
    ann = client(app, study.tokens["ann"], base_url="http://evil.example")

    for path in ("/rate/", "/api/queue/", f"/s/{study.tokens['ann']}"):
        response = ann.get(path, follow_redirects=False)
        assert "evil.example" not in response.headers.get("location", ""), path


@pytest.mark.parametrize("url", ["ftp://study.example.org", "https://study.example.org/study",
                                 "study.example.org", "https://", "https://a@study.example.org",
                                 "https://study.example.org?x=1", "https://h:99999"])  # fmt: skip
def test_a_public_url_must_be_an_origin(study, monkeypatch, url) -> None:
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: None)

    result = runner.invoke(cli, ["reader-study", "serve", str(study.root), "--public-url", url])

    assert result.exit_code == 2
    assert "public URL" in result.output and "Traceback" not in result.output


def test_a_proxied_request_through_uvicorn(study, monkeypatch, apps) -> None:
    web_app, settings = served(study, monkeypatch, apps, "--public-url", PUBLIC_URL)
    token = study.tokens["ann"]
    headers = {"Host": PROXIED_HOST, "X-Forwarded-Proto": "https",
               "X-Forwarded-For": "203.0.113.7"}  # fmt: skip
    with running(web_app, settings) as port:
        base = f"http://127.0.0.1:{port}"
        signed_in = httpx.get(f"{base}/s/{token}", headers=headers)
        image_id = httpx.get(f"{base}/api/queue", headers=headers,
                             cookies={COOKIE_NAME: token}).json()["images"][0]  # fmt: skip
        answer = httpx.post(f"{base}/api/ratings/{image_id}", json={"scores": {"proximal": 4}},
                            cookies={COOKIE_NAME: token},
                            headers={**headers, "Origin": PUBLIC_URL,
                                     CSRF_HEADER: csrf_token(token)})  # fmt: skip

    assert signed_in.status_code == 303 and "secure" in signed_in.headers["set-cookie"].lower()
    assert answer.status_code == 200, answer.text


# 6. someone else's link

#: What Chromium sends with a form post of a page under Referrer-Policy: no-referrer.
CHROMIUM_FORM_POST = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}


def signed_in_as(web_app, token: str, **kwargs) -> TestClient:
    """A client that opened the personal link of `token`."""
    made = client(web_app, **kwargs)
    assert made.get(f"/s/{token}", follow_redirects=False).status_code == 303
    return made


def test_another_persons_link_asks_before_switching(app, study) -> None:
    ann, bob = study.tokens["ann"], study.tokens["bob"]
    browser = signed_in_as(app, ann)

    page = browser.get(f"/s/{bob}", follow_redirects=False)

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "set-cookie" not in page.headers and browser.cookies[COOKIE_NAME] == ann
    assert 'id="signed-in"' in page.text and "<strong>ann</strong>" in page.text
    assert 'id="link-owner"' in page.text and "<strong>bob</strong>" in page.text
    assert f'action="/s/{bob}"' in page.text and f'value="{csrf_token(ann)}"' in page.text
    assert_security_headers(page)

    switched = browser.post(f"/s/{bob}", data={"csrf": csrf_token(ann)}, follow_redirects=False,
                            headers=CHROMIUM_FORM_POST)  # fmt: skip

    assert switched.status_code == 303 and switched.headers["location"] == "/rate"
    assert browser.cookies[COOKIE_NAME] == bob
    assert "httponly" in switched.headers["set-cookie"].lower()


def test_switching_needs_the_csrf_token_and_the_same_origin(app, study) -> None:
    ann, bob = study.tokens["ann"], study.tokens["bob"]
    browser = signed_in_as(app, ann)
    path = f"/s/{bob}"

    refused = [
        browser.post(path, follow_redirects=False),
        browser.post(path, data={"csrf": csrf_token(bob)}, follow_redirects=False),
        browser.post(path, data={"csrf": "0" * 64}, follow_redirects=False),
        browser.post(path, data={"csrf": csrf_token(ann)}, headers={"Origin": "http://evil.example"},
                     follow_redirects=False),
        browser.post(path, data={"csrf": csrf_token(ann)},
                     headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False),
        browser.post(path, data={"csrf": csrf_token(ann)}, headers={"Origin": "null"},
                     follow_redirects=False),
        browser.post(path, data={"csrf": csrf_token(ann)}, follow_redirects=False,
                     headers={**CHROMIUM_FORM_POST, "Sec-Fetch-Site": "same-site"}),
        client(app).post(path, data={"csrf": csrf_token(ann)}, follow_redirects=False),
        browser.post("/s/not-a-token", data={"csrf": csrf_token(ann)}, follow_redirects=False),
    ]  # fmt: skip

    assert [r.status_code for r in refused] == [403, 403, 403, 403, 403, 403, 403, 401, 401]
    assert browser.cookies[COOKIE_NAME] == ann


def test_ones_own_link_and_a_first_link_sign_in_at_once(app, study) -> None:
    ann = study.tokens["ann"]
    browser = signed_in_as(app, ann)
    stale = client(app, ann[:-2] + "xx")

    again = browser.get(f"/s/{ann}", follow_redirects=False)
    over_stale = stale.get(f"/s/{study.tokens['admin']}", follow_redirects=False)

    assert again.status_code == 303 and again.headers["location"] == "/rate"
    assert over_stale.status_code == 303 and over_stale.headers["location"] == "/admin"
