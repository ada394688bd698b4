"""The web app's API: authentication, roles, validation, CSRF, blinding, path traversal; every
test runs on SQLite and on PostgreSQL (tests/conftest.py's `db_backend`)."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select
from study_testkit import SECRET_TEXT, BuiltStudy, build_study, copy_study, person, screen

from angiosynth.readerstudy.app import COOKIE_NAME, CSRF_HEADER, create_app, csrf_token
from angiosynth.readerstudy.export import ratings_table
from angiosynth.readerstudy.schema import RatingRow


@pytest.fixture(scope="module")
def screened(tmp_path_factory, db_backend) -> Iterator[BuiltStudy]:
    """8 images, raters ann and bob; the screener's first two images discarded (on each
    backend: its own SQLite file, a PostgreSQL database)."""
    with db_backend.database() as url:
        built = build_study(tmp_path_factory.mktemp("api"), db_url=url)
        screen(built, discard=2)
        yield built


@pytest.fixture
def study(screened, tmp_path, db_backend) -> Iterator[BuiltStudy]:
    """A fresh copy of the screened study (and of its PostgreSQL database)."""
    with db_backend.database(template=screened.db_url) as url:
        yield copy_study(screened, tmp_path / "study", url)


@pytest.fixture
def app(study):
    """The web app of the study copy."""
    web_app = create_app(study.root, study.db_url)
    yield web_app
    web_app.state.study.store.dispose()


def client_for(app, token: str) -> TestClient:
    """A client signed in with `token` through the personal link (the cookie)."""
    client = TestClient(app)
    response = client.get(f"/s/{token}", follow_redirects=False)
    assert response.status_code == 303, response.text
    return client


def post(client: TestClient, path: str, body: dict, token: str, **headers: str):
    """A JSON POST with the CSRF header of `token` (and extra headers)."""
    return client.post(path, json=body, headers={CSRF_HEADER: csrf_token(token), **headers})


def queue_of(client: TestClient) -> list[str]:
    """The image ids of the client's queue."""
    response = client.get("/api/queue")
    assert response.status_code == 200, response.text
    return response.json()["images"]


def test_personal_links_redirect_each_role_to_its_page(app, study) -> None:
    for name, page in (("sam", "/screen"), ("ann", "/rate"), ("admin", "/admin")):
        client = TestClient(app)
        response = client.get(f"/s/{study.tokens[name]}", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == page
        assert "httponly" in response.headers["set-cookie"].lower()
        assert client.get(page).status_code == 200
        assert client.get("/", follow_redirects=False).headers["location"] == page


@pytest.mark.parametrize("path", ["/api/queue", "/rate", "/screen", "/admin", "/api/progress",
                                  "/admin/ratings.csv", "/assets/rate.js", "/"])  # fmt: skip
def test_missing_and_forged_tokens_are_refused(app, study, path) -> None:
    anonymous = TestClient(app)
    forged = TestClient(app, cookies={COOKIE_NAME: study.tokens["ann"][:-2] + "xx"})

    for client in (anonymous, forged):
        response = client.get(path)
        assert response.status_code == 401
        assert "personal link" in response.json()["detail"]
    assert TestClient(app).get("/s/not-a-token").status_code == 401


def test_pages_answer_html_errors_to_browsers(app) -> None:
    response = TestClient(app).get("/rate", headers={"Accept": "text/html"})

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert "personal link" in response.text


def test_roles_are_enforced_on_every_route(app, study) -> None:
    rater, screener, admin = (client_for(app, study.tokens[n]) for n in ("ann", "sam", "admin"))
    image_id = queue_of(screener)[0]

    for path in ("/admin", "/api/progress", "/admin/ratings.csv", "/admin/screening.csv",
                 "/screen"):  # fmt: skip
        assert rater.get(path).status_code == 403, path
    assert post(rater, f"/api/screening/{image_id}", {"keep": False}, study.tokens["ann"]
                ).status_code == 403  # fmt: skip
    assert post(screener, f"/api/ratings/{image_id}", {"scores": {"proximal": 3}},
                study.tokens["sam"]).status_code == 403  # fmt: skip
    assert screener.get("/rate").status_code == 403
    assert admin.get("/api/queue").status_code == 403
    assert admin.get(f"/api/images/{image_id}").status_code == 403
    assert "detail" in rater.get("/admin").json()


@pytest.mark.parametrize("score", [0, 6, -1, 2.5, True, "x", "", "3.0", None, [3]])
def test_scores_out_of_range_are_refused(app, study, score) -> None:
    rater = client_for(app, study.tokens["ann"])
    image_id = queue_of(rater)[0]

    response = post(rater, f"/api/ratings/{image_id}", {"scores": {"proximal": score}},
                    study.tokens["ann"])  # fmt: skip

    assert response.status_code == 422
    assert "detail" in response.json()
    assert ratings_table(app.state.study.store).empty


@pytest.mark.parametrize("body", [{"scores": {"distal": 3}}, {"scores": {"Proximal": 3}},
                                  {"scores": {}}, {"scores": {"proximal": 3}, "extra": 1},
                                  {"external": "yes"}, {"scores": [3, 3, 3]}])  # fmt: skip
def test_unknown_segments_and_malformed_bodies_are_refused(app, study, body) -> None:
    rater = client_for(app, study.tokens["ann"])
    image_id = queue_of(rater)[0]

    response = post(rater, f"/api/ratings/{image_id}", body, study.tokens["ann"])

    assert response.status_code == 422
    assert "detail" in response.json()


def test_foreign_image_ids_are_refused(app, study) -> None:
    discarded = screen(study, discard=2)
    rater = client_for(app, study.tokens["ann"])
    token = study.tokens["ann"]
    queued = queue_of(rater)

    assert len(queued) == 6 and not set(discarded) & set(queued)
    for image_id in (*discarded, "0123456789abcdef", "nothex", queued[0].upper()):
        answer = post(rater, f"/api/ratings/{image_id}", {"scores": {"proximal": 3}}, token)
        assert answer.status_code == 404, image_id
        assert "in your queue" in answer.json()["detail"]
        assert rater.get(f"/api/images/{image_id}").status_code == 404
    assert ratings_table(app.state.study.store).empty


@pytest.mark.parametrize("path", [
    "/api/images/..%2Fstudy.db", "/api/images/..%2F..%2Fstudy.json", "/api/images/%2e%2e",
    "/api/images/../study.db", "/api/images/..%5Cstudy.db", "/assets/..%2Fapp.py",
    "/assets/../app.py", "/assets/%2e%2e%2fstorage.py", "/api/images/images%2F..%2Fstudy.db",
])  # fmt: skip
def test_path_traversal_finds_nothing(app, study, path) -> None:
    rater = client_for(app, study.tokens["ann"])

    response = rater.get(path)

    assert response.status_code in (401, 404), response.status_code
    assert b"SQLite format" not in response.content and b"import" not in response.content
    assert post(rater, "/api/ratings/..%2Fstudy.db", {"scores": {"proximal": 3}},
                study.tokens["ann"]).status_code == 404  # fmt: skip


def test_csrf_header_and_origin_are_required_on_posts(app, study) -> None:
    token = study.tokens["ann"]
    rater = client_for(app, token)
    image_id = queue_of(rater)[0]
    path, body = f"/api/ratings/{image_id}", {"scores": {"proximal": 3}}
    other = csrf_token(study.tokens["bob"])

    assert rater.post(path, json=body).status_code == 403
    assert rater.post(path, json=body, headers={CSRF_HEADER: "0" * 64}).status_code == 403
    assert rater.post(path, json=body, headers={CSRF_HEADER: other}).status_code == 403
    assert post(rater, path, body, token, Origin="http://evil.example").status_code == 403
    assert post(rater, path, body, token, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert "CSRF" in rater.post(path, json=body).json()["detail"]
    assert ratings_table(app.state.study.store).empty
    assert post(rater, path, body, token, Origin="http://testserver").status_code == 200
    assert post(rater, path, body, token).status_code == 200


def test_the_page_carries_the_csrf_token_and_security_headers(app, study) -> None:
    page = client_for(app, study.tokens["ann"]).get("/rate")

    assert f'content="{csrf_token(study.tokens["ann"])}"' in page.text
    assert "script-src" not in page.headers["content-security-policy"]
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


def test_edits_update_instead_of_adding_rows(app, study) -> None:
    token = study.tokens["ann"]
    rater = client_for(app, token)
    image_id = queue_of(rater)[0]

    for score in (3, "4", "np", "NA", 5):
        assert post(rater, f"/api/ratings/{image_id}", {"scores": {"proximal": score}},
                    token).status_code == 200  # fmt: skip
    assert post(rater, f"/api/ratings/{image_id}", {"external": True}, token).status_code == 200
    assert post(rater, f"/api/ratings/{image_id}", {"external": False}, token).status_code == 200

    store = app.state.study.store
    with store.session() as session:
        assert session.scalar(select(func.count(RatingRow.id))) == 1
    answers = store.rating_answers(person(store, "ann"))
    assert answers[image_id].scores == {"proximal": "5"} and answers[image_id].external is False


def test_raters_see_only_their_own_answers_and_no_metadata(app, study) -> None:
    ann, bob = client_for(app, study.tokens["ann"]), client_for(app, study.tokens["bob"])
    image_id = queue_of(ann)[0]
    scores = {"proximal": 4, "medium": 3, "peripheral": "NP"}
    assert post(ann, f"/api/ratings/{image_id}", {"scores": scores, "external": True},
                study.tokens["ann"]).status_code == 200  # fmt: skip

    ann_view, bob_view = ann.get("/api/queue").json(), bob.get("/api/queue").json()
    assert ann_view["answers"] == {
        image_id: {"scores": {"proximal": "4", "medium": "3", "peripheral": "NP"},
                   "external": True}}  # fmt: skip
    assert bob_view["answers"] == {}
    assert sorted(bob_view["images"]) == sorted(ann_view["images"])
    assert bob_view["images"] != ann_view["images"]  # each rater has an own order
    seen = ann.get("/api/queue").text + ann.get("/rate").text + ann.get("/assets/rate.js").text
    for row in study.samples.itertuples():
        assert row.file not in seen and row.prompt not in seen
    for condition in ("AC A", "PC A", "AC B", "PC B", "ACA", "PCB"):
        assert condition not in seen


def test_raters_wait_for_the_screener(tmp_path, study_db) -> None:
    fresh = build_study(tmp_path, n=4, db_url=study_db)
    web_app = create_app(fresh.root, fresh.db_url)
    try:
        rater = client_for(web_app, fresh.tokens["ann"])
        screener = client_for(web_app, fresh.tokens["sam"])
        assert rater.get("/api/queue").json() == {"images": [], "answers": {},
                                                  "screening_complete": False}  # fmt: skip
        first = queue_of(screener)[0]
        assert rater.get(f"/api/images/{first}").status_code == 404
        assert post(screener, f"/api/screening/{first}", {"keep": True},
                    fresh.tokens["sam"]).status_code == 200  # fmt: skip
        assert queue_of(rater) == [first]
        assert post(screener, f"/api/screening/{first}", {"keep": "no"},
                    fresh.tokens["sam"]).status_code == 422  # fmt: skip
    finally:
        web_app.state.study.store.dispose()


def test_served_images_are_the_stripped_pngs(app, study) -> None:
    rater = client_for(app, study.tokens["ann"])
    image_id = queue_of(rater)[0]

    response = rater.get(f"/api/images/{image_id}")

    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == (study.root / "images" / f"{image_id}.png").read_bytes()
    assert SECRET_TEXT.encode() not in response.content
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.mode == "L" and image.text == {}


def test_admin_sees_progress_and_downloads_the_export(app, study) -> None:
    token = study.tokens["ann"]
    rater, admin = client_for(app, token), client_for(app, study.tokens["admin"])
    image_id = queue_of(rater)[0]
    post(rater, f"/api/ratings/{image_id}",
         {"scores": {"proximal": 2, "medium": "NA", "peripheral": 1}}, token)  # fmt: skip

    progress = {row["name"]: row for row in admin.get("/api/progress").json()}
    ratings = admin.get("/admin/ratings.csv")
    screening = admin.get("/admin/screening.csv")

    assert progress["sam"] == {"name": "sam", "role": "screener", "done": 8, "total": 8}
    assert progress["ann"]["done"] == 1 and progress["ann"]["total"] == 6
    assert progress["bob"]["done"] == 0 and "admin" not in progress
    assert ratings.headers["content-disposition"] == 'attachment; filename="ratings.csv"'
    lines = ratings.text.splitlines()
    assert lines[0] == "image_id,condition,rater,segment,score,external"
    assert [line.split(",")[3:] for line in lines[1:]] == [
        ["proximal", "2", "0"], ["medium", "NA", "0"], ["peripheral", "1", "0"]]  # fmt: skip
    assert screening.text.splitlines()[0] == "image_id,condition,keep"
    assert len(screening.text.splitlines()) == 9
    assert "ann" in admin.get("/admin").text
