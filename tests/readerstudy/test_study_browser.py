"""The web app in a real browser: Debian's chromium driven by Python playwright (sync API)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from study_testkit import build_study, live_server, person, screen

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)",
)


@pytest.fixture(scope="module")
def browser():
    """One headless chromium for the module (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def open_link(browser):
    """Opens a personal link in a fresh browser context; fails the test on page errors and
    failed requests (but for the statuses a test adds to `open_link.expected_statuses`)."""
    contexts, errors = [], []

    def open_(base_url: str, token: str):
        context = browser.new_context(viewport={"width": 1280, "height": 800},
                                      accept_downloads=True)  # fmt: skip
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{base_url}/s/{token}")
        return page

    open_.expected_statuses = set()
    yield open_
    for context in contexts:
        context.close()
    expected = [f"status of {status} " for status in open_.expected_statuses]
    assert [e for e in errors if not any(text in e for text in expected)] == []


def expect_position(page, position: int, text: str) -> None:
    """Waits until the page shows image `position` with that progress text."""
    page.wait_for_selector(f'body[data-position="{position}"]')
    page.wait_for_function(
        "text => document.getElementById('progress-text').textContent === text", arg=text
    )
    page.wait_for_function(
        "() => (document.getElementById('canvas').dataset.loaded || '')"
        ".endsWith('/api/images/' + document.body.dataset.image)"
    )


def wait_saved(page) -> None:
    page.wait_for_selector('#status[data-state="saved"]')


def test_screener_keeps_and_discards_with_buttons_and_keys(tmp_path, open_link) -> None:
    study = build_study(tmp_path, n=5)
    with live_server(study.root) as base_url:
        page = open_link(base_url, study.tokens["sam"])
        expect_position(page, 1, "Image 1 of 5 · 0 decided")
        page.click("#keep")
        expect_position(page, 2, "Image 2 of 5 · 1 decided")
        page.keyboard.press("d")
        expect_position(page, 3, "Image 3 of 5 · 2 decided")
        page.keyboard.press("k")
        page.click("#discard")
        expect_position(page, 5, "Image 5 of 5 · 4 decided")
        page.keyboard.press("k")
        page.wait_for_selector("#message[data-kind='done']")
        wait_saved(page)

        page.reload()
        expect_position(page, 5, "Image 5 of 5 · 5 decided")
        for _ in range(4):
            page.keyboard.press("ArrowLeft")
        expect_position(page, 1, "Image 1 of 5 · 5 decided")
        assert page.get_attribute("#keep", "aria-pressed") == "true"
        page.keyboard.press("d")
        expect_position(page, 2, "Image 2 of 5 · 5 decided")
        wait_saved(page)

    store = study.store()
    try:
        sam = person(store, "sam")
        decisions = store.screening_answers(sam)
        assert [decisions[i] for i in store.queue(sam)] == [False, False, True, False, True]
    finally:
        store.dispose()


def _score(page, segment: str, score: str) -> None:
    page.click(f'#segment-{segment} button[data-score="{score}"]')


def _ann_rates_three_images(page) -> None:
    expect_position(page, 1, "Image 1 of 5 · 0 rated")
    _score(page, "proximal", "4")  # image 1: the mouse only
    _score(page, "medium", "3")
    _score(page, "peripheral", "NA")
    page.click("#external")
    page.click("#next")
    expect_position(page, 2, "Image 2 of 5 · 1 rated")
    for key in ("5", "4", "n", "Enter"):  # image 2: the keyboard only
        page.keyboard.press(key)
    expect_position(page, 3, "Image 3 of 5 · 2 rated")
    page.keyboard.press("2")  # image 3: both
    _score(page, "medium", "1")
    for key in ("a", "e", "ArrowRight"):
        page.keyboard.press(key)
    expect_position(page, 4, "Image 4 of 5 · 3 rated")
    page.keyboard.press("Enter")  # image 4 is not answered: it stays
    page.wait_for_selector("#message[data-kind='error']")
    assert page.get_attribute("body", "data-position") == "4"
    wait_saved(page)


def _check_viewer(page) -> None:
    canvas = page.locator("#canvas")
    fitted = canvas.get_attribute("data-scale")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -300)
    page.wait_for_function(f"() => document.getElementById('canvas').dataset.scale !== '{fitted}'")
    assert float(canvas.get_attribute("data-scale")) > float(fitted)
    page.mouse.down(button="right")
    page.mouse.move(box["x"] + box["width"] / 2 - 100, box["y"] + box["height"] / 2 + 20)
    page.mouse.up(button="right")
    assert int(canvas.get_attribute("data-window")) < 255
    assert int(canvas.get_attribute("data-level")) > 128
    page.keyboard.press("0")
    assert canvas.get_attribute("data-scale") == fitted
    assert canvas.get_attribute("data-window") == "255"


def _read_download(page, selector: str) -> pd.DataFrame:
    with page.expect_download() as download:
        page.click(selector)
    return pd.read_csv(download.value.path(), dtype={"score": str}, keep_default_na=False)


def test_rater_rates_resumes_edits_and_the_admin_exports_it(tmp_path, open_link) -> None:
    study = build_study(tmp_path, n=6)
    screen(study, discard=1)
    with live_server(study.root) as base_url:
        page = open_link(base_url, study.tokens["ann"])
        _ann_rates_three_images(page)
        _check_viewer(page)

        page.reload()
        expect_position(page, 4, "Image 4 of 5 · 3 rated")
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("Backspace")
        expect_position(page, 2, "Image 2 of 5 · 3 rated")
        medium_4 = '#segment-medium button[data-score="4"]'
        assert page.get_attribute(medium_4, "aria-pressed") == "true"
        page.keyboard.press("ArrowDown")
        page.keyboard.press("2")  # the medium segment of image 2: 4 -> 2
        page.click("#external")
        wait_saved(page)

        admin = open_link(base_url, study.tokens["admin"])
        assert "3" in admin.inner_text("table.progress-table")
        ratings = _read_download(admin, "#ratings-csv")
        screening = _read_download(admin, "#screening-csv")

    store = study.store()
    queue = store.queue(person(store, "ann"))
    store.dispose()
    entered = {
        queue[0]: (("proximal", "4"), ("medium", "3"), ("peripheral", "NA"), 1),
        queue[1]: (("proximal", "5"), ("medium", "2"), ("peripheral", "NP"), 1),
        queue[2]: (("proximal", "2"), ("medium", "1"), ("peripheral", "NA"), 1),
    }
    expected = sorted((image_id, "ann", segment, score, flag)
                      for image_id, (*scores, flag) in entered.items()
                      for segment, score in scores)  # fmt: skip
    rows = ratings[["image_id", "rater", "segment", "score", "external"]]
    assert sorted(map(tuple, rows.itertuples(index=False))) == expected
    assert list(ratings.columns) == ["image_id", "condition", "rater", "segment", "score",
                                     "external"]  # fmt: skip
    assert len(screening) == 6 and screening["keep"].sum() == 5


def test_a_second_rater_sees_nothing_of_the_first(tmp_path, open_link) -> None:
    study = build_study(tmp_path, n=4)
    screen(study)
    store = study.store()
    ann = person(store, "ann")
    for image_id in store.queue(ann):
        store.rate(ann, image_id, {"proximal": 5, "medium": 5, "peripheral": 5}, external=True)
    store.dispose()
    with live_server(study.root) as base_url:
        page = open_link(base_url, study.tokens["bob"])
        open_link.expected_statuses.add(403)
        expect_position(page, 1, "Image 1 of 4 · 0 rated")
        assert page.locator("button.score.selected").count() == 0
        assert not page.is_checked("#external")
        queue = page.evaluate("fetch('/api/queue').then(r => r.json())")
        forged = page.evaluate("""fetch('/api/ratings/' + document.body.dataset.image, {
            method: 'POST', headers: {'Content-Type': 'application/json'},
            body: JSON.stringify({scores: {proximal: 1}})}).then(r => r.status)""")
        admin_page = page.evaluate("fetch('/admin/ratings.csv').then(r => r.status)")
        html = page.content()

    assert queue["answers"] == {} and len(queue["images"]) == 4
    assert forged == 403 and admin_page == 403
    for condition in ("AC A", "PC A", "AC B", "PC B"):
        assert condition not in html
    for row in study.samples.itertuples():
        assert row.file not in html and row.prompt not in html


def test_someone_elses_link_asks_before_switching(tmp_path, open_link) -> None:
    study = build_study(tmp_path, n=4)
    screen(study)
    with live_server(study.root) as base_url:
        page = open_link(base_url, study.tokens["ann"])
        expect_position(page, 1, "Image 1 of 4 · 0 rated")
        page.goto(f"{base_url}/s/{study.tokens['bob']}")
        assert "ann" in page.inner_text("#signed-in")
        assert "bob" in page.inner_text("#link-owner")
        page.click("#stay")
        expect_position(page, 1, "Image 1 of 4 · 0 rated")
        assert page.inner_text(".who").startswith("ann")

        page.goto(f"{base_url}/s/{study.tokens['bob']}")
        page.click("#switch")
        page.wait_for_url(f"{base_url}/rate")
        expect_position(page, 1, "Image 1 of 4 · 0 rated")
        assert page.inner_text(".who").startswith("bob")
