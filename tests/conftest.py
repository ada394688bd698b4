"""Shared fixtures: one small simulated archive written once per test session; the database
backends of the reader-study tests (SQLite, and PostgreSQL at ANGIOSYNTH_TEST_POSTGRES_URL)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from angiosynth.config import PhantomConfig
from angiosynth.phantom.archive import ArchiveSummary, write_archive

#: A fixed pseudonymisation key, so pseudonyms (and hence splits) are the same in every session.
KEY_HEX = "5f3c9a0e1d2b4c6a8e7f9012a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6"
#: Settings of the shared archive: small frames, two patients, a fixed seed.
ARCHIVE_SIZE = 96
ARCHIVE_PATIENTS = 2
ARCHIVE_SEED = 0


@dataclass(frozen=True)
class Archive:
    """A written archive with its summary and ground truth."""

    root: Path
    summary: ArchiveSummary
    config: PhantomConfig
    seed: int
    truth: pd.DataFrame

    @property
    def series(self) -> pd.DataFrame:
        """One row per series (the first frame's row), indexed by series_uid."""
        return self.truth.groupby("series_uid").first()


def write_key(path: Path) -> Path:
    """Writes the fixed key to `path` (the dataset's key lives outside the dataset)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(KEY_HEX + "\n")
    return path


def small_config(image_size: int = ARCHIVE_SIZE) -> PhantomConfig:
    """Phantom settings small enough for unit tests."""
    return PhantomConfig(image_size=image_size)


def write_small_archive(out: Path, seed: int = ARCHIVE_SEED, **kwargs: object) -> Archive:
    """Writes an archive with the shared test settings (keyword arguments override them)."""
    config = kwargs.pop("config", small_config())
    n_patients = kwargs.pop("n_patients", ARCHIVE_PATIENTS)
    summary = write_archive(out, n_patients=n_patients, seed=seed, config=config, **kwargs)
    truth = pd.read_parquet(out / "ground_truth.parquet")
    return Archive(root=out, summary=summary, config=config, seed=seed, truth=truth)


@pytest.fixture(scope="session")
def archive_writer() -> Callable[..., Archive]:
    """`write_small_archive`, for tests that need an archive of their own."""
    return write_small_archive


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    """The shared archive (2 patients, 96 px, seed 0); tests must not modify it."""
    return write_small_archive(tmp_path_factory.mktemp("shared") / "archive")


@pytest.fixture(scope="session")
def pairs_archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    """The shared archive written again with `pairs=True` (pairs/*.npz beside the same files);
    tests must not modify it."""
    return write_small_archive(tmp_path_factory.mktemp("pairs") / "archive", pairs=True)


@dataclass(frozen=True)
class PairsDataset:
    """`pairs_archive` curated at 64 px with the fixed key (one patient in train, one in test),
    its arterial.parquet the phantom's true arterial frames (in curation's splits)."""

    archive: Archive
    root: Path


@pytest.fixture(scope="session")
def pairs_dataset(pairs_archive: Archive, tmp_path_factory: pytest.TempPathFactory) -> PairsDataset:
    """The curated pairs archive; tests must not modify it (copy it first)."""
    from angiosynth.curation.arterial import arterial_table
    from angiosynth.curation.curate import CurateOptions, curate
    from angiosynth.curation.rules import DEFAULT_RULES

    base = tmp_path_factory.mktemp("pairs-dataset")
    root = base / "dataset"
    options = CurateOptions(size=64, key_file=write_key(base / "dataset.key"))
    curate(pairs_archive.root / "dicom", root, DEFAULT_RULES, options)
    frames = pd.read_parquet(root / "frames.parquet")
    truth = pairs_archive.truth[pairs_archive.truth["is_arterial"]]
    rows = frames.merge(truth[["series_uid", "frame_index"]], on=["series_uid", "frame_index"])
    arterial_table(rows.assign(probability=1.0)).to_parquet(root / "arterial.parquet")
    return PairsDataset(pairs_archive, root)


# --- latent diffusion: a micro configuration, a dataset with arterial frames, trained runs ------


def micro_ldm_config(**train_ldm: object):
    """The tiny pipeline shrunk further for tests: 32 px frames -> 8 x 8 x 3 latents."""
    from angiosynth.config import LDMConfig

    return LDMConfig.model_validate({
        "data": {"image_size": 32},
        "vae": {"block_out_channels": [8, 16, 16], "layers_per_block": 1, "norm_num_groups": 8},
        "text_encoder": {"width": 16, "layers": 1, "heads": 2, "max_length": 32},
        "unet": {
            "block_out_channels": [16, 32], "layers_per_block": 1, "norm_num_groups": 8,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "attention_head_dim": [1, 2],
        },
        "train_vae": {"batch_size": 8, "lr": 1e-3, "max_steps": 4, "perceptual": "none"},
        "train_ldm": {"batch_size": 8, "lr": 1e-3, "max_steps": 6, "checkpoint_every": 3,
                      "keep_checkpoints": 2, "log_every": 2, "ema_decay": 0.9, **train_ldm},
        "sample": {"sampler": "ddim", "steps": 4, "guidance": 1.0, "batch_size": 4},
    })  # fmt: skip


@dataclass(frozen=True)
class DiffusionData:
    """A curated copy of the shared archive whose arterial.parquet is the phantom's truth:
    the second phantom patient is the training split, the first the validation and test split
    (chosen by original ID, so the split does not depend on the random pseudonym key)."""

    dataset: Path
    vae_run: Path
    ldm_run: Path


def _truth_arterial_table(dataset: Path, truth: pd.DataFrame) -> pd.DataFrame:
    from angiosynth.curation.arterial import arterial_table

    frames = pd.read_parquet(dataset / "frames.parquet")
    keep = truth[truth["is_arterial"]][["series_uid", "frame_index"]]
    rows = frames.merge(keep, on=["series_uid", "frame_index"])
    rows = rows[rows["circulation"].isin(["anterior", "posterior"])].copy()
    original = truth.drop_duplicates("series_uid").set_index("series_uid")["patient_id"]
    second = sorted(original.unique())[1]  # by original ID: the same under any pseudonym key
    rows["split"] = np.where(rows["series_uid"].map(original) == second, "train", "val")
    rows["probability"] = 1.0
    return arterial_table(rows)


@pytest.fixture(scope="session")
def diffusion_data(archive: Archive, tmp_path_factory: pytest.TempPathFactory) -> DiffusionData:
    """The shared archive curated at 64 px, its true arterial frames selected, an autoencoder
    trained for 4 steps and a latent diffusion model for 6 steps (micro configuration)."""
    from angiosynth.curation.curate import CurateOptions, curate
    from angiosynth.curation.rules import DEFAULT_RULES
    from angiosynth.training.ldm import train_ldm
    from angiosynth.training.vae import train_vae

    base = tmp_path_factory.mktemp("diffusion")
    dataset = base / "dataset"
    options = CurateOptions(size=64, key_file=write_key(base / "dataset.key"))
    curate(archive.root / "dicom", dataset, DEFAULT_RULES, options)
    _truth_arterial_table(dataset, archive.truth).to_parquet(dataset / "arterial.parquet")
    config = micro_ldm_config()
    train_vae(dataset, config, base / "vae")
    train_ldm(dataset, base / "vae", config, base / "ldm")
    return DiffusionData(dataset, base / "vae", base / "ldm")


# --- reader study: the databases a study lives in -----------------------------------------------

#: The database kinds that the reader-study API, concurrency and kill tests run on.
BACKENDS = ("sqlite", "postgresql")
#: A PostgreSQL URL whose user may create databases (scripts/postgres.sh prints one; `.ci/run`
#: sets it); without it, the PostgreSQL cases are skipped.
POSTGRES_ENV = "ANGIOSYNTH_TEST_POSTGRES_URL"


class PostgresServer:
    """The PostgreSQL server of a URL: makes one fresh database per study and drops it."""

    def __init__(self, url: str) -> None:
        """Connects to `url` (its user must be allowed to create databases).

        Raises:
            ImportError: when the driver (psycopg) is not installed.
            sqlalchemy.exc.SQLAlchemyError: when the server cannot be reached.
        """
        self.url = make_url(url)
        self._admin = create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with self._admin.connect() as connection:
            self.version = connection.execute(text("SHOW server_version")).scalar()

    def create(self, template: str | None = None) -> str:
        """The URL of a new, empty database (a copy of the `template` URL's database if given)."""
        name = f"angiosynth_test_{secrets.token_hex(6)}"
        statement = f'CREATE DATABASE "{name}"'
        if template is not None:
            statement += f' TEMPLATE "{make_url(template).database}"'
        with self._admin.connect() as connection:
            connection.execute(text(statement))
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        """Drops the database of `url`, closing any connection left to it."""
        with self._admin.connect() as connection:
            name = make_url(url).database
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def dispose(self) -> None:
        """Closes the server's engine."""
        self._admin.dispose()


@dataclass(frozen=True)
class DatabaseBackend:
    """Where a test's studies keep their database: "sqlite" (the study's own study.db file) or
    "postgresql" (a fresh database on `server` per study)."""

    name: str
    server: PostgresServer | None = None

    @contextmanager
    def database(self, template: str | None = None) -> Iterator[str | None]:
        """The `--db` URL of a new study: None for SQLite; for PostgreSQL, a new database (a
        copy of the `template` URL's database if given), dropped afterwards."""
        if self.server is None:
            yield None
            return
        url = self.server.create(template)
        try:
            yield url
        finally:
            self.server.drop(url)


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
def db_backend(request: pytest.FixtureRequest) -> DatabaseBackend:
    """The database of a test's reader studies: "sqlite", then "postgresql" (every test that
    takes this fixture or `study_db` runs once on each)."""
    if request.param == "postgresql":
        return DatabaseBackend("postgresql", request.getfixturevalue("postgres_server"))
    return DatabaseBackend("sqlite")


@pytest.fixture
def study_db(db_backend: DatabaseBackend) -> Iterator[str | None]:
    """The `--db` URL of one new study: None (its own SQLite file) or a fresh PostgreSQL
    database, dropped after the test."""
    with db_backend.database() as url:
        yield url
