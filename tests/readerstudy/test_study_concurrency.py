"""Concurrent raters against a real uvicorn server, on the SQLite WAL database and on PostgreSQL
(tests/conftest.py's `db_backend`)."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import httpx
from study_testkit import build_study, live_server, person, screen, signed_in_headers

from angiosynth.readerstudy.export import ratings_table

ANSWERS_PER_RATER = 100


def _answer_all(base_url: str, token: str, queue: list[str]) -> list[int]:
    """Posts one full answer per image from 4 threads; returns the status codes."""
    client = httpx.Client(base_url=base_url, headers=signed_in_headers(token), timeout=60)

    def answer(job: tuple[int, str]) -> int:
        i, image_id = job
        body = {"scores": {"proximal": 1 + i % 5, "medium": 1 + (i + 1) % 5,
                           "peripheral": "NA" if i % 7 == 0 else 1 + (i + 2) % 5},
                "external": i % 10 == 0}  # fmt: skip
        return client.post(f"/api/ratings/{image_id}", json=body).status_code

    with client, ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(answer, enumerate(queue)))


def test_two_raters_answering_in_parallel_lose_nothing(tmp_path, db_backend, study_db) -> None:
    study = build_study(tmp_path, n=ANSWERS_PER_RATER, raters=("ann", "bob"), db_url=study_db)
    screen(study)
    store = study.store()
    queues = {name: store.queue(person(store, name)) for name in ("ann", "bob")}
    store.dispose()

    server = live_server(study.root, study.db_url)
    with server as base_url, ThreadPoolExecutor(max_workers=2) as raters:
        jobs = [(base_url, study.tokens[name], queues[name]) for name in ("ann", "bob")]
        results = list(raters.map(lambda job: _answer_all(*job), jobs))

    assert [len(r) for r in results] == [ANSWERS_PER_RATER, ANSWERS_PER_RATER]
    assert {code for r in results for code in r} == {200}
    store = study.store()
    try:
        table = ratings_table(store)
        answers = {name: store.rating_answers(person(store, name)) for name in ("ann", "bob")}
    finally:
        store.dispose()
    assert len(table) == 2 * ANSWERS_PER_RATER * 3
    assert table.groupby("rater")["image_id"].nunique().to_dict() == {"ann": 100, "bob": 100}
    for name in ("ann", "bob"):
        assert len(answers[name]) == ANSWERS_PER_RATER
        assert all(a.complete for a in answers[name].values())
        assert sum(a.external for a in answers[name].values()) == 10
    if db_backend.name == "sqlite":
        with sqlite3.connect(study.root / "study.db") as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    else:
        assert not (study.root / "study.db").exists()


def test_two_processes_writing_the_same_database_wait_for_each_other(tmp_path, study_db) -> None:
    study = build_study(tmp_path, n=40, raters=("ann", "bob"), db_url=study_db)
    screen(study)
    stores = [study.store(), study.store()]  # separate engines, as two processes would have

    def answer_all(job: tuple[int, str]) -> None:
        store, name = stores[job[0]], job[1]
        rater = person(store, name)
        for image_id in store.queue(rater):
            store.rate(rater, image_id, {"proximal": 2, "medium": 3, "peripheral": 4})

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(answer_all, [(0, "ann"), (1, "bob")]))
        assert len(ratings_table(stores[0])) == 2 * 40 * 3
    finally:
        for store in stores:
            store.dispose()
