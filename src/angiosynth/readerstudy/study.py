"""Creating a reader study: importing images, drawing each person's order, issuing tokens.

A study folder holds::

    STUDY/
      images/<id>.png   the images, re-encoded as 8-bit grayscale PNG with no metadata chunks,
                        named by opaque random ids (16 hex digits), never by the source name
      study.db          the database (see `storage`), unless another one is given by URL
      study.json        seed, image and condition counts, names and roles (no tokens)

The images come from `angiosynth sample --design reader-study` (a folder with samples.parquet:
file relative to the folder, condition, and optionally prompt, seed, batch, index) or from any
folder with a metadata table (CSV or Parquet with at least `file` and `condition`).

Each person (the screener, every rater and an admin) gets a token from
`secrets.token_urlsafe(32)`; only its SHA-256 hash is stored and the token is returned once,
inside a personal link. The screener and each rater get their own random order of all images,
drawn from the seed; a rater's queue is that order filtered to the images the screener keeps.

Links may expire (`parse_expiry`: a number of days or an ISO date), and a person's link can be
revoked or reissued later (`person_named`, `reissue_link`, `StudyStore.revoke`): the old token
stops working at once, and the person, their queue and their answers stay the same.
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from angiosynth.errors import InputNotFoundError, OptionError, OutputExistsError
from angiosynth.progress import Progress, tracked
from angiosynth.readerstudy.schema import ROLES, ImageRow, PersonRow, QueueEntryRow
from angiosynth.readerstudy.storage import (
    DB_FILE,
    IMAGES_DIR,
    Person,
    StudyError,
    StudyStore,
    default_url,
    hash_token,
)
from angiosynth.runfiles import atomic_directory, write_json_atomic

SAMPLES_FILE = "samples.parquet"
STUDY_FILE = "study.json"
ADMIN_NAME = "admin"
MAX_NAME_LENGTH = 64
REQUIRED_COLUMNS = ("file", "condition")
#: Unicode categories refused in names: control characters and line/paragraph separators.
_CONTROL_CATEGORIES = ("Cc", "Zl", "Zp")
_OPTIONAL_COLUMNS = {"prompt": "prompt", "seed": "seed", "batch": "batch", "index": "sample_index"}


@dataclass(frozen=True)
class Invitation:
    """A person's name, role and token (shown once, never stored)."""

    name: str
    role: str
    token: str

    def link(self, base_url: str) -> str:
        """The personal link that signs this person in."""
        return f"{base_url.rstrip('/')}/s/{self.token}"


@dataclass(frozen=True)
class CreatedStudy:
    """What `create_study` wrote."""

    study_dir: Path
    images: int
    invitations: list[Invitation]


def read_metadata(samples_dir: Path, metadata: Path | None = None) -> pd.DataFrame:
    """The image table: `metadata` (CSV or Parquet) or SAMPLES_DIR/samples.parquet.

    Raises:
        InputNotFoundError: when the table or one of its images is missing.
        StudyError: for an unreadable table, missing columns, empty tables, duplicate or
            escaping file names.
    """
    samples_dir = Path(samples_dir)
    path = Path(metadata) if metadata is not None else samples_dir / SAMPLES_FILE
    if not path.is_file():
        raise InputNotFoundError(f"{path}: no such metadata table")
    try:
        table = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except (OSError, ValueError) as err:
        detail = " ".join(str(err).split())
        raise StudyError(f"{path}: unreadable metadata table ({detail})") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise StudyError(f"{path}: missing column(s) {', '.join(missing)}")
    if table.empty:
        raise StudyError(f"{path}: no images listed")
    if table["condition"].isna().any():
        raise StudyError(f"{path}: condition is empty on line {_first_line(table['condition'])}")
    duplicated = table["file"][table["file"].duplicated()]
    if not duplicated.empty:
        raise StudyError(f"{path}: file {duplicated.iloc[0]!r} is listed twice")
    for name in table["file"]:
        _source_path(samples_dir, str(name), path)
    return table.reset_index(drop=True)


def _first_line(column: pd.Series) -> int:
    return int(np.flatnonzero(column.isna().to_numpy())[0]) + 2


def _source_path(samples_dir: Path, name: str, table: Path) -> Path:
    root = samples_dir.resolve()
    source = (root / name).resolve()
    if Path(name).is_absolute() or not source.is_relative_to(root):
        raise StudyError(f"{table}: file {name!r} is not inside {samples_dir}")
    if not source.is_file():
        raise InputNotFoundError(f"{samples_dir / name}: no such image (listed in {table})")
    return source


def plain_grayscale(path: Path) -> np.ndarray:
    """An image file as an 8-bit grayscale array (16-bit images scaled, colour converted).

    Raises:
        StudyError: the file is not a readable image.
    """
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I"):
                wide = np.asarray(image, dtype=np.float64)
                return np.clip(np.round(wide * 255 / 65535), 0, 255).astype(np.uint8)
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except OSError as err:
        raise StudyError(f"{path}: unreadable image ({err})") from err


def write_plain_png(array: np.ndarray, path: Path) -> None:
    """Writes a fresh PNG holding only pixels (no text, EXIF, ICC or time chunks)."""
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(path, format="PNG")


def _control_character(name: str) -> str | None:
    """The first control character of a name (C0, DEL, C1, line or paragraph separator)."""
    return next((c for c in name if unicodedata.category(c) in _CONTROL_CATEGORIES), None)


def _check_names(screener: str, raters: list[str]) -> None:
    for option, name in (("--screener", screener), *(("--raters", r) for r in raters)):
        if not name.strip() or len(name) > MAX_NAME_LENGTH:
            raise OptionError(
                f"--screener, --raters: names must be 1-{MAX_NAME_LENGTH} characters, got {name!r}"
            )
        control = _control_character(name)
        if control is not None:
            raise OptionError(f"{option}: names must not hold control characters (line breaks, "
                              f"tabs, escapes), got {name!r} with {control!r}")  # fmt: skip
    if not raters:
        raise OptionError("--raters: give at least one rater")
    repeated = sorted({r for r in raters if raters.count(r) > 1})
    if repeated:
        raise OptionError(f"--raters: rater {repeated[0]!r} is named twice")


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """The end of a link's validity from an `--expires` value: a whole number of days from
    `now` (default: the current time), an ISO date (the link stops at 00:00 UTC of that day)
    or an ISO date and time (UTC unless it names an offset).

    Raises:
        OptionError: naming --expires, for anything else or a moment that is not in the future.
    """
    now = now or datetime.now(UTC)
    value = text.strip()
    if value.isdigit() and value.isascii():
        if int(value) < 1:
            raise OptionError(f"--expires: give 1 or more days, got {text!r}")
        return now + timedelta(days=int(value))
    try:
        day = date.fromisoformat(value)
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            message = "give a number of days or an ISO date (2030-06-30 or 2030-06-30T18:00)"
            raise OptionError(f"--expires: {message}, got {text!r}") from None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment <= now:
        raise OptionError(f"--expires: {text} is in the past")
    return moment


def describe_time(moment: datetime) -> str:
    """A time as the CLI prints it: 2030-06-30 18:00 UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def person_named(store: StudyStore, name: str, role: str | None, option: str) -> Person:
    """The one person of that name (and role, when given); errors name `option`.

    Raises:
        OptionError: for an unknown role, no such person, or a name that the screener and a
            rater (or the admin) share while no role is given.
    """
    if role is not None and role not in ROLES:
        raise OptionError(f"--role must be one of {', '.join(ROLES)}, got {role!r}")
    found = [p for p in store.persons() if p.name == name and role in (None, p.role)]
    if not found:
        raise OptionError(f"{option}: no {role or 'person'} named {name!r}")
    if len(found) > 1:
        roles = " or ".join(f"--role {p.role}" for p in found)
        raise OptionError(f"{option}: {name!r} is the name of {len(found)} people; add {roles}")
    return found[0]


def reissue_link(store: StudyStore, person: Person, expires_at: datetime | None) -> Invitation:
    """A new token for `person` (shown once); the old one stops working at once, also in a
    running server, and a revocation is lifted. `expires_at` None: the new link never expires.
    """
    invitation = Invitation(person.name, person.role, _new_token())
    store.replace_token(person, hash_token(invitation.token), expires_at)
    return invitation


def _new_token() -> str:
    return secrets.token_urlsafe(32)


def _check_target(study_dir: Path, db_url: str | None) -> None:
    if study_dir.exists() and (not study_dir.is_dir() or any(study_dir.iterdir())):
        raise OutputExistsError(f"{study_dir}: exists and is not empty; choose a new folder")
    if db_url is not None:
        store = StudyStore(db_url)
        try:
            if store.holds_study("--db"):
                raise OutputExistsError("--db: the database already holds a study")
        finally:
            store.dispose()


def create_study(
    samples_dir: Path,
    study_dir: Path,
    *,
    screener: str,
    raters: list[str],
    metadata: Path | None = None,
    seed: int = 0,
    db_url: str | None = None,
    expires_at: datetime | None = None,
    progress: Progress | None = None,
) -> CreatedStudy:
    """Imports the images and writes a new study folder (and database).

    The folder is built under a temporary name beside `study_dir` and renamed into place at the
    end (`runfiles.atomic_directory`), so a failure leaves nothing behind; the database rows are
    written in one transaction. `expires_at` (None: never) ends the validity of every link.

    Raises:
        OutputExistsError: when `study_dir` is not empty or the `db_url` database holds a study.
        OptionError: for bad names (blank, longer than 64 characters, a rater named twice, or
            holding a control character such as a line break or tab).
        InputNotFoundError, StudyError: for bad metadata or images, or an unreadable database.
    """
    study_dir = Path(study_dir)
    _check_names(screener, raters)
    _check_target(study_dir, db_url)
    table = read_metadata(samples_dir, metadata)
    with atomic_directory(study_dir) as building:
        (building / IMAGES_DIR).mkdir()
        images = _import_images(Path(samples_dir), table, building / IMAGES_DIR, progress)
        invitations = _invitations(screener, raters)
        store = StudyStore(db_url or default_url(building))
        try:
            store.create_schema()
            _write_rows(store, images, invitations, seed, expires_at)
        finally:
            store.dispose()
        _write_summary(building, table, invitations, seed, db_url)
    return CreatedStudy(study_dir, len(images), invitations)


def _import_images(
    samples_dir: Path, table: pd.DataFrame, images_dir: Path, progress: Progress | None
) -> list[ImageRow]:
    rows = table.to_dict("records")
    used: set[str] = set()
    images = []
    for record in tracked(rows, len(rows), "import images", progress):
        public_id = _new_id(used)
        array = plain_grayscale(samples_dir / str(record["file"]))
        write_plain_png(array, images_dir / f"{public_id}.png")
        images.append(ImageRow(
            public_id=public_id, condition=str(record["condition"]),
            source_file=str(record["file"]), height=array.shape[0], width=array.shape[1],
            **{field: _optional(record.get(column)) for column, field in _OPTIONAL_COLUMNS.items()},
        ))  # fmt: skip
    return images


def _new_id(used: set[str]) -> str:
    public_id = secrets.token_hex(8)
    while public_id in used:
        public_id = secrets.token_hex(8)
    used.add(public_id)
    return public_id


def _optional(value: object) -> object:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _invitations(screener: str, raters: list[str]) -> list[Invitation]:
    people = [(screener, "screener"), *((r, "rater") for r in raters), (ADMIN_NAME, "admin")]
    return [Invitation(name, role, _new_token()) for name, role in people]


def _write_rows(
    store: StudyStore,
    images: list[ImageRow],
    invitations: list[Invitation],
    seed: int,
    expires_at: datetime | None,
) -> None:
    rng = np.random.default_rng(seed)
    expires_at = None if expires_at is None else expires_at.astimezone(UTC)
    with store.session() as session:
        session.add_all(images)
        persons = [PersonRow(name=i.name, role=i.role, token_hash=hash_token(i.token),
                             expires_at=expires_at) for i in invitations]  # fmt: skip
        session.add_all(persons)
        session.flush()
        for person in persons:
            if person.role == "admin":
                continue
            order = rng.permutation(len(images))
            session.add_all(
                QueueEntryRow(person_id=person.id, image_id=images[i].id, position=position)
                for position, i in enumerate(order.tolist())
            )


def _write_summary(
    building: Path,
    table: pd.DataFrame,
    invitations: list[Invitation],
    seed: int,
    db_url: str | None,
) -> None:
    write_json_atomic(building / STUDY_FILE, {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": seed,
        "images": len(table),
        "conditions": {str(k): int(v) for k, v in table["condition"].value_counts().items()},
        "persons": [{"name": i.name, "role": i.role} for i in invitations],
        "database": DB_FILE if db_url is None else "external (--db URL, not recorded)",
    })  # fmt: skip
