"""`reader-study links`: listing, revoking and reissuing personal links, expiry, old studies."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, update
from study_testkit import (
    BuiltStudy,
    build_study,
    copy_study,
    person,
    screen,
    signed_in_headers,
    write_samples,
)
from typer.testing import CliRunner

from angiosynth.cli.main import app as cli
from angiosynth.errors import OptionError
from angiosynth.readerstudy.app import COOKIE_NAME, create_app
from angiosynth.readerstudy.schema import PersonRow
from angiosynth.readerstudy.storage import StudyStore, hash_token
from angiosynth.readerstudy.study import create_study

runner = CliRunner()
_LINK = re.compile(r"(http://\S+)/s/([A-Za-z0-9_-]{40,})")
#: A study.db written by the code before links could be revoked (a `sqlite3` dump: screener
#: sam, rater ann, admin; both images kept; ann has answered one image).
OLD_DUMP = Path(__file__).parent / "data" / "study_before_links.sql"
OLD_TOKENS = {
    "sam": "Znik18UW5beDyIKS5gAAmI5HfsGKlBsTYvfUX1_Rbwg",
    "ann": "z_BmDLRZ14rEQNcwfwWCTkBbqqhjEW_7Dzk1gic3RXU",
    "admin": "0ZkX-LAjnAIFTwoZA3KPz0YlB_S-6QpX-ZBP00MAK4U",
}
OLD_ANSWERED = "2a922b37b75bd9da"


@pytest.fixture(scope="module")
def screened(tmp_path_factory) -> BuiltStudy:
    """4 images, all kept; raters ann and bob."""
    built = build_study(tmp_path_factory.mktemp("links"), n=4)
    screen(built)
    return built


@pytest.fixture
def study(screened, tmp_path) -> BuiltStudy:
    """A fresh copy of the screened study."""
    return copy_study(screened, tmp_path / "study")


@pytest.fixture
def web_app(study):
    """The web app of the study copy, created before any link changes."""
    served = create_app(study.root)
    yield served
    served.state.study.store.dispose()


def links(root: Path, *args: str):
    """`reader-study links ROOT ARGS...` through the CLI."""
    return runner.invoke(cli, ["reader-study", "links", str(root), *args])


def signed_in(web_app, token: str) -> TestClient:
    """A client that opened the personal link of `token`."""
    client = TestClient(web_app)
    response = client.get(f"/s/{token}", follow_redirects=False)
    assert response.status_code == 303, response.text
    return client


def one_line_error(result) -> str:
    """The single error line of a failed command."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_revoking_stops_the_link_at_once_in_a_running_app(web_app, study) -> None:
    token = study.tokens["ann"]
    ann, bob = signed_in(web_app, token), signed_in(web_app, study.tokens["bob"])
    image_id = ann.get("/api/queue").json()["images"][0]
    rated = ann.post(f"/api/ratings/{image_id}", json={"scores": {"proximal": 4}},
                     headers=signed_in_headers(token))  # fmt: skip
    assert rated.status_code == 200, rated.text

    result = links(study.root, "--revoke", "ann")

    assert result.exit_code == 0, result.output
    assert "revoked" in result.output and "answers are kept" in result.output
    assert ann.get("/api/queue").status_code == 401  # the same app object, the old cookie
    assert ann.post(f"/api/ratings/{image_id}", json={"scores": {"medium": 4}},
                    headers=signed_in_headers(token)).status_code == 401  # fmt: skip
    assert TestClient(web_app).get(f"/s/{token}", follow_redirects=False).status_code == 401
    assert bob.get("/api/queue").status_code == 200  # nobody else is affected
    store = study.store()
    try:
        assert store.rating_answers(person(store, "ann"))[image_id].scores == {"proximal": "4"}
    finally:
        store.dispose()


def test_a_reissued_link_replaces_the_old_one_and_keeps_the_answers(web_app, study) -> None:
    old = study.tokens["ann"]
    client = signed_in(web_app, old)
    image_id = client.get("/api/queue").json()["images"][0]
    client.post(f"/api/ratings/{image_id}", json={"scores": {"proximal": 2}, "external": True},
                headers=signed_in_headers(old))  # fmt: skip

    result = links(study.root, "--reissue", "ann", "--base-url", "http://reader.example:9000/")

    assert result.exit_code == 0, result.output
    (base, new), = _LINK.findall(result.output)  # fmt: skip
    assert base == "http://reader.example:9000" and new != old
    assert "rater" in result.output and "ann" in result.output and "once" in result.output
    assert client.get("/api/queue").status_code == 401
    fresh = signed_in(web_app, new)
    queue = fresh.get("/api/queue").json()
    assert queue["answers"][image_id] == {"scores": {"proximal": "2"}, "external": True}
    saved = fresh.post(f"/api/ratings/{image_id}", json={"scores": {"medium": 3}},
                       headers=signed_in_headers(new))  # fmt: skip
    assert saved.status_code == 200, saved.text
    store = study.store()
    try:
        assert [p.name for p in store.persons()] == ["sam", "ann", "bob", "admin"]
        answers = store.rating_answers(person(store, "ann"))[image_id]
        assert answers.scores == {"proximal": "2", "medium": "3"}
    finally:
        store.dispose()
    again = links(study.root, "--reissue", "ann")  # a revoked link can be reissued too
    assert again.exit_code == 0 and signed_in(web_app, _LINK.findall(again.output)[0][1])


def test_the_app_sees_a_token_changed_by_another_process_at_once(web_app, study) -> None:
    client = signed_in(web_app, study.tokens["ann"])
    assert client.get("/api/queue").status_code == 200
    store = study.store()  # another connection, as `reader-study links` in another process
    try:
        with store.session() as session:
            session.execute(update(PersonRow).where(PersonRow.name == "ann")
                            .values(token_hash=hash_token("a new token")))  # fmt: skip
    finally:
        store.dispose()

    assert client.get("/api/queue").status_code == 401
    assert signed_in(web_app, "a new token").get("/api/queue").status_code == 200


def test_links_lists_every_person_with_the_state_of_their_link(study) -> None:
    assert links(study.root, "--revoke", "bob").exit_code == 0
    assert links(study.root, "--reissue", "ann", "--expires", "2099-01-31").exit_code == 0

    result = links(study.root)

    assert result.exit_code == 0, result.output
    rows = {line.split(":")[0].split()[-1]: line for line in result.output.splitlines()
            if re.match(r"\s+(screener|rater|admin)\s", line)}  # fmt: skip
    assert sorted(rows) == ["admin", "ann", "bob", "sam"]
    assert "active" in rows["sam"] and "no expiry" in rows["sam"]
    assert "active" in rows["ann"] and "expires 2099-01-31 00:00 UTC" in rows["ann"]
    assert "revoked" in rows["bob"]
    assert not _LINK.search(result.output)  # tokens are not stored, so no link is shown


def test_expired_links_are_refused(web_app, study) -> None:
    result = links(study.root, "--reissue", "ann", "--expires", "1")
    token = _LINK.findall(result.output)[0][1]
    client = signed_in(web_app, token)
    assert client.get("/api/queue").status_code == 200
    store = study.store()
    try:
        with store.session() as session:
            past = datetime.now(UTC) - timedelta(seconds=1)
            ann = PersonRow.name == "ann"
            session.execute(update(PersonRow).where(ann).values(expires_at=past))
    finally:
        store.dispose()

    assert client.get("/api/queue").status_code == 401
    assert TestClient(web_app).get(f"/s/{token}", follow_redirects=False).status_code == 401
    assert "expired" in links(study.root).output


def test_create_can_give_links_an_expiry(tmp_path) -> None:
    write_samples(tmp_path / "samples", n=2)
    created = runner.invoke(cli, ["reader-study", "create", str(tmp_path / "samples"),
                                  "--screener", "s", "--raters", "r", "--out",
                                  str(tmp_path / "study"), "--expires", "2099-02-01"])  # fmt: skip

    assert created.exit_code == 0, created.output
    assert "expire 2099-02-01 00:00 UTC" in created.output
    listed = links(tmp_path / "study").output
    assert listed.count("expires 2099-02-01 00:00 UTC") == 3


def test_expiry_accepts_days_and_iso_dates() -> None:
    from angiosynth.readerstudy.study import parse_expiry

    now = datetime(2030, 5, 6, 7, 8, 9, tzinfo=UTC)

    assert parse_expiry("7", now) == now + timedelta(days=7)
    assert parse_expiry("2030-06-01", now) == datetime(2030, 6, 1, tzinfo=UTC)
    assert parse_expiry("2030-06-01T12:00+02:00", now) == datetime(2030, 6, 1, 10, tzinfo=UTC)
    assert parse_expiry("2030-06-01T12:00", now) == datetime(2030, 6, 1, 12, tzinfo=UTC)
    for bad in ("soon", "0", "-3", "2030-05-06", "2020-01-01T00:00Z", ""):
        with pytest.raises(OptionError, match="--expires"):
            parse_expiry(bad, now)


@pytest.mark.parametrize(("args", "message"), [
    (["--revoke", "zoe"], "--revoke: no person named 'zoe'"),
    (["--reissue", "zoe"], "--reissue: no person named 'zoe'"),
    (["--revoke", "ann", "--reissue", "bob"], "give --revoke or --reissue, not both"),
    (["--expires", "3"], "--expires goes with --reissue"),
    (["--reissue", "ann", "--expires", "soon"], "--expires"),
    (["--reissue", "ann", "--expires", "2001-01-01"], "in the past"),
    (["--revoke", "ann", "--role", "screener"], "no screener named 'ann'"),
])  # fmt: skip
def test_link_errors_are_one_line(study, args, message) -> None:
    assert message in one_line_error(links(study.root, *args))


def test_a_name_of_two_people_needs_a_role(tmp_path) -> None:
    write_samples(tmp_path / "samples", n=2)
    created = create_study(tmp_path / "samples", tmp_path / "study", screener="sam",
                           raters=["sam", "bob"])  # fmt: skip
    tokens = {(i.role, i.name): i.token for i in created.invitations}

    error = one_line_error(links(created.study_dir, "--revoke", "sam"))
    result = links(created.study_dir, "--revoke", "sam", "--role", "rater")

    assert "--role" in error and "screener" in error and "rater" in error
    assert result.exit_code == 0, result.output
    web_app = create_app(created.study_dir)
    try:
        for role, status in (("rater", 401), ("screener", 200)):
            client = TestClient(web_app, cookies={COOKIE_NAME: tokens[role, "sam"]})
            assert client.get("/api/queue").status_code == status
    finally:
        web_app.state.study.store.dispose()


def _old_study(root: Path) -> Path:
    """A study folder whose database was written before links could be revoked."""
    (root / "images").mkdir(parents=True)
    connection = sqlite3.connect(root / "study.db")
    connection.executescript(OLD_DUMP.read_text())
    connection.close()
    return root


def test_a_study_created_before_links_opens_and_gains_the_columns(tmp_path) -> None:
    root = _old_study(tmp_path / "old")
    web_app = create_app(root)
    try:
        client = signed_in(web_app, OLD_TOKENS["ann"])
        queue = client.get("/api/queue").json()
        assert queue["answers"][OLD_ANSWERED]["scores"] == {"proximal": "4", "medium": "3",
                                                             "peripheral": "NA"}  # fmt: skip
        assert "active" in links(root).output

        revoked = links(root, "--revoke", "ann")
        reissued = links(root, "--reissue", "sam")

        assert revoked.exit_code == 0 and reissued.exit_code == 0, revoked.output
        assert client.get("/api/queue").status_code == 401
        assert TestClient(web_app).get(f"/s/{OLD_TOKENS['sam']}").status_code == 401
        assert signed_in(web_app, OLD_TOKENS["admin"]).get("/api/progress").status_code == 200
    finally:
        web_app.state.study.store.dispose()
    store = StudyStore.open(root)  # opening again changes nothing
    try:
        columns = {c["name"] for c in inspect(store.engine).get_columns("persons")}
        assert {"revoked_at", "expires_at", "issued_at"} <= columns
        assert [p.name for p in store.persons()] == ["sam", "ann", "admin"]
    finally:
        store.dispose()
