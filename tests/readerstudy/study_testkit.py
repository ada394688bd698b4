"""Helpers of the reader-study tests: small sample folders, studies, a live uvicorn server.

Imported by the test_study_*.py modules (pytest puts this folder on sys.path). The database
backends that studies are built on (the `db_backend` and `study_db` fixtures) are in
tests/conftest.py.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import uvicorn
from PIL import Image, PngImagePlugin

from angiosynth.readerstudy.app import COOKIE_NAME, create_app, csrf_token
from angiosynth.readerstudy.storage import Person, StudyStore
from angiosynth.readerstudy.study import create_study

CONDITIONS = ("AC A", "PC A", "AC B", "PC B")
#: Text written into every source PNG, which must not survive the import.
SECRET_TEXT = "secret-prompt-text"


def vessel_image(contrast: float, size: int = 32, seed: int = 0) -> np.ndarray:
    """A grey 8-bit square with dark horizontal and vertical "vessels" of the given contrast."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size), 150.0) + rng.normal(0, 3, (size, size))
    for line in range(3, size, 7):
        image[line, :] -= contrast
        image[:, line] -= contrast / 2
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def write_samples(folder: Path, n: int = 8, size: int = 32) -> pd.DataFrame:
    """Writes `n` PNGs (with a text chunk) and samples.parquet as `angiosynth sample` does.

    Image i has vessel contrast rising with i, so later images look better.
    """
    (folder / "png8").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        condition = CONDITIONS[i % 4]
        name = f"png8/{i:05d}_{condition.replace(' ', '')}.png"
        info = PngImagePlugin.PngInfo()
        info.add_text("prompt", SECRET_TEXT)
        contrast = 5 + 110 * i / max(n - 1, 1)
        Image.fromarray(vessel_image(contrast, size, seed=i)).save(folder / name, pnginfo=info)
        rows.append({"file": name, "file16": name, "prompt": f"prompt {condition}",
                     "condition": condition, "seed": i, "batch": i // 4, "index": i})  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_parquet(folder / "samples.parquet", index=False)
    return table


@dataclass(frozen=True)
class BuiltStudy:
    """A study made for a test, the tokens of its people by name, its database's URL (None: the
    study's own SQLite file)."""

    root: Path
    tokens: dict[str, str]
    samples: pd.DataFrame
    db_url: str | None = None

    def store(self) -> StudyStore:
        """A store of the study (the caller disposes of it)."""
        return StudyStore.open(self.root, self.db_url)


def build_study(
    tmp_path: Path,
    n: int = 8,
    raters: tuple[str, ...] = ("ann", "bob"),
    seed: int = 0,
    db_url: str | None = None,
) -> BuiltStudy:
    """Samples and a study with screener "sam", the given raters and "admin" (in the database
    at `db_url`, or the study's own SQLite file)."""
    samples = write_samples(tmp_path / "samples", n)
    created = create_study(tmp_path / "samples", tmp_path / "study", screener="sam",
                           raters=list(raters), seed=seed, db_url=db_url)  # fmt: skip
    tokens = {i.name: i.token for i in created.invitations}
    return BuiltStudy(tmp_path / "study", tokens, samples, db_url)


def copy_study(study: BuiltStudy, dest: Path, db_url: str | None = None) -> BuiltStudy:
    """A copy of a study (same tokens and ids), cheaper than building a new one. An outside
    database is not copied here: give the URL of its copy (`db_backend.database(template=...)`,
    tests/conftest.py)."""
    shutil.copytree(study.root, dest)
    return BuiltStudy(dest, study.tokens, study.samples, db_url)


def person(store: StudyStore, name: str) -> Person:
    """The person of that name (the screener when a rater has the same name)."""
    return next(p for p in store.persons() if p.name == name)


def screen(study: BuiltStudy, discard: int = 0) -> list[str]:
    """Screens every image through the store, discarding the first `discard` of the screener's
    order; returns the discarded ids."""
    store = study.store()
    try:
        screener = person(store, "sam")
        order = store.queue(screener)
        for position, public_id in enumerate(order):
            store.screen(screener, public_id, keep=position >= discard)
        return order[:discard]
    finally:
        store.dispose()


def signed_in_headers(token: str) -> dict[str, str]:
    """Cookie and CSRF headers of a person's requests."""
    return {"Cookie": f"{COOKIE_NAME}={token}", "X-CSRF-Token": csrf_token(token)}


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def live_server(study_dir: Path, db_url: str | None = None) -> Iterator[str]:
    """Runs the study's app under uvicorn in a background thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(study_dir, db_url), host="127.0.0.1", port=port,
                            log_level="warning")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        config.app.state.study.store.dispose()
