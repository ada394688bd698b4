"""Storage of a reader study: the reads and writes of app, export and simulate.

A study lives in one database: SQLite in WAL mode at `STUDY/study.db` by default (busy timeout
30 s, foreign keys on), or any PostgreSQL URL, with the tables of `schema`. Answers carry
created_at and updated_at (UTC). Every write is one short transaction, committed
before the call returns, and an edit updates its row (an upsert on the unique key) instead of
adding one. With SQLite, the writes of one process take turns on a lock and other processes wait
through the busy timeout. A rater's queue is their seeded order filtered to the images the
screener has kept so far; the screener's queue is every image in the screener's seeded order.

Opening a study (`StudyStore.open`) adds the columns that later versions added to its tables
(persons' issued_at, expires_at and revoked_at) when they are missing, so a study made by an
earlier version opens and keeps its links and answers.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from angiosynth.errors import AngiosynthError, InputNotFoundError, OptionError
from angiosynth.readerstudy.schema import (
    ADDED_COLUMNS,
    SCORES,
    SEGMENTS,
    Base,
    ExternalFlagRow,
    ImageRow,
    PersonRow,
    QueueEntryRow,
    RatingRow,
    ScreeningRow,
    utc_now,
)

DB_FILE = "study.db"
IMAGES_DIR = "images"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_PUBLIC_ID = re.compile(r"[0-9a-f]{16}")
_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class StudyError(AngiosynthError):
    """Base class of the errors of a reader study."""


class InvalidAnswer(StudyError, ValueError):
    """An answer that is not allowed (unknown segment, score out of range, wrong role)."""


class UnknownImage(StudyError, LookupError):
    """An image id that does not exist or is not in the person's queue."""


def hash_token(token: str) -> str:
    """The SHA-256 hex digest stored in place of a person's token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_public_id(text: str) -> bool:
    """Whether `text` has the form of an image id (16 lowercase hex digits)."""
    return _PUBLIC_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class Person:
    """A participant as the app sees them (no token, no hash)."""

    id: int
    name: str
    role: str


def _utc(moment: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime (SQLite hands back naive UTC times)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class Link:
    """The state of a person's personal link (the token itself is never stored)."""

    person: Person
    issued_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """The link's state at `now` (default: the current time): revoked, expired or active."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utc_now()):
            return "expired"
        return "active"


def _link(row: PersonRow) -> Link:
    person = Person(row.id, row.name, row.role)
    issued = _utc(row.issued_at) or _utc(row.created_at) or utc_now()
    return Link(person, issued, _utc(row.expires_at), _utc(row.revoked_at))


@dataclass(frozen=True)
class RatingAnswer:
    """A rater's answers on one image: scores by segment and the external flag."""

    scores: dict[str, str]
    external: bool

    @property
    def complete(self) -> bool:
        """Whether all three segments are answered."""
        return all(segment in self.scores for segment in SEGMENTS)


@dataclass(frozen=True)
class Progress:
    """How far one person is: `done` of `total` images answered (all segments for raters)."""

    person: Person
    done: int
    total: int


def normalise_score(value: object) -> str:
    """A score as stored: 1-5 (int or digit string), "NP" or "NA".

    Raises:
        InvalidAnswer: for anything else (booleans, 0, 6, 2.5, "x").
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidAnswer(f"score must be 1-5, NP or NA, got {value!r}")
    text = str(value).strip().upper()
    if text not in SCORES:
        raise InvalidAnswer(f"score must be 1-5, NP or NA, got {value!r}")
    return text


def default_url(study_dir: Path) -> str:
    """The SQLAlchemy URL of a study's own SQLite database."""
    return f"sqlite:///{(Path(study_dir) / DB_FILE).resolve()}"


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for a SQLite (WAL, busy timeout) or PostgreSQL URL.

    Raises:
        OptionError: for other database kinds.
        StudyError: when the driver of a PostgreSQL URL is not installed.
    """
    dialect = url.split(":", 1)[0].split("+", 1)[0]
    if dialect not in _INSERTS:
        raise OptionError(f"--db must be a sqlite or postgresql URL, got {dialect!r}")
    if dialect == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False,
                               "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})  # fmt: skip
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except ImportError as err:
        raise StudyError(f"--db: the {dialect} driver is not installed ({err})") from err


class StudyStore:
    """The database of one study: sessions, authentication, queues, answers, progress."""

    def __init__(self, url: str) -> None:
        """Opens (without creating tables) the database at `url`."""
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._insert = _INSERTS[self.engine.dialect.name]
        sqlite_file = self.engine.dialect.name == "sqlite"
        self._write_lock: AbstractContextManager = (
            threading.Lock() if sqlite_file else nullcontext()
        )

    @classmethod
    def open(cls, study_dir: Path, db_url: str | None = None) -> StudyStore:
        """The store of an existing study (its own SQLite file unless `db_url` is given).

        Raises:
            InputNotFoundError: when the study folder or its database is missing, or the
                database holds no study.
            StudyError: when the database cannot be read.
        """
        study_dir = Path(study_dir)
        if not (study_dir / IMAGES_DIR).is_dir():
            raise InputNotFoundError(f"{study_dir}: not a reader study (no {IMAGES_DIR}/ folder)")
        if db_url is None and not (study_dir / DB_FILE).is_file():
            raise InputNotFoundError(f"{study_dir / DB_FILE}: no such database")
        store = cls(db_url or default_url(study_dir))
        where = "--db" if db_url else study_dir / DB_FILE
        if not store.holds_study(where):
            store.dispose()
            raise InputNotFoundError(f"{where}: the database holds no study")
        try:
            store.add_missing_columns(where)
        except BaseException:
            store.dispose()
            raise
        return store

    def create_schema(self) -> None:
        """Creates the tables that do not exist yet."""
        Base.metadata.create_all(self.engine)

    def add_missing_columns(self, where: object) -> None:
        """Adds the `ADDED_COLUMNS` an older study's tables lack (ALTER TABLE ... ADD COLUMN,
        one transaction each); does nothing when they are there.

        Another process opening the same old study at the same moment may add a column first;
        that is detected by looking again, and is no error.

        Raises:
            StudyError: naming `where`, when a column cannot be added (a read-only database).
        """
        for table_name, names in ADDED_COLUMNS.items():
            table = Base.metadata.tables[table_name]
            for name in names:
                if name in self._column_names(table_name):
                    continue
                kind = table.c[name].type.compile(dialect=self.engine.dialect)
                statement = text(f"ALTER TABLE {table_name} ADD COLUMN {name} {kind}")
                try:
                    with self.engine.begin() as connection:
                        connection.execute(statement)
                except SQLAlchemyError as err:
                    if name in self._column_names(table_name):
                        continue
                    reason = str(getattr(err, "orig", None) or err).splitlines()[0]
                    raise StudyError(f"{where}: cannot add column {table_name}.{name} to this "
                                     f"older study ({reason})") from err  # fmt: skip

    def _column_names(self, table_name: str) -> set[str]:
        return {column["name"] for column in inspect(self.engine).get_columns(table_name)}

    def dispose(self) -> None:
        """Closes all pooled connections (SQLite then folds its WAL file back)."""
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction is committed on success and rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    def holds_study(self, where: object) -> bool:
        """Whether the database holds a study's persons.

        Raises:
            StudyError: naming `where` (the database's file or option), when the database
                cannot be read (no server, refused login, not a database); the store is
                disposed then.
        """
        try:
            return bool(self.persons())
        except SQLAlchemyError as err:
            self.dispose()
            reason = str(getattr(err, "orig", None) or err).splitlines()[0]
            raise StudyError(f"{where}: cannot read the database ({reason})") from err

    def persons(self) -> list[Person]:
        """Everyone in the study, in creation order; empty when the tables are missing."""
        if not inspect(self.engine).has_table(PersonRow.__tablename__):
            return []
        columns = (PersonRow.id, PersonRow.name, PersonRow.role)  # those of every version
        with self.session() as session:
            rows = session.execute(select(*columns).order_by(PersonRow.id))
            return [Person(*row) for row in rows]

    def authenticate(self, token: str) -> Person | None:
        """The person whose personal link holds `token`, unless it is revoked or expired.

        Nothing is cached: every call looks the person up by the SHA-256 hash of the token (an
        equality match on the unique, indexed token_hash column), so a link revoked or
        reissued, by this process or by `reader-study links` in another, stops working with
        the very next request. The lookup compares hashes in the database's own time, not in
        constant time, and that is safe: what timing could reveal is how much of a stored
        *hash* matches the hash of a guess (an attacker can pick guesses by their hashes, so at
        best they learn a stored hash), and knowing a stored hash does not help to find a token
        that hashes to it, a SHA-256 preimage of 256 random bits.
        """
        if not isinstance(token, str):
            return None
        with self.session() as session:
            row = session.scalar(select(PersonRow).where(PersonRow.token_hash == hash_token(token)))
            if row is None or _link(row).state() != "active":
                return None
            return Person(row.id, row.name, row.role)

    def links(self) -> list[Link]:
        """Everyone's link state, in creation order."""
        with self.session() as session:
            return [_link(r) for r in session.scalars(select(PersonRow).order_by(PersonRow.id))]

    def revoke(self, person: Person) -> None:
        """Disables a person's link at once (their answers stay); a revoked link stays revoked
        (at its first revocation time) until it is reissued."""
        revoked_at = func.coalesce(PersonRow.revoked_at, utc_now())
        with self._write_lock, self.session() as session:
            session.execute(_person_update(person).values(revoked_at=revoked_at))

    def replace_token(self, person: Person, token_hash: str, expires_at: datetime | None) -> None:
        """Gives a person a new link (by its token's hash): the old token stops working at once,
        the revocation is lifted, the expiry set (None: never); the person and their answers
        stay the same."""
        values = {"token_hash": token_hash, "issued_at": utc_now(), "expires_at": _utc(expires_at),
                  "revoked_at": None}  # fmt: skip
        with self._write_lock, self.session() as session:
            session.execute(_person_update(person).values(**values))

    def queue(self, person: Person) -> list[str]:
        """The public ids of a person's images, in their order (see the module docstring)."""
        with self.session() as session:
            return list(session.scalars(_queue_query(person)))

    def screen(self, person: Person, public_id: str, keep: bool) -> None:
        """Stores (or changes) the screener's decision on one image of their queue."""
        with self._write_lock, self.session() as session:
            self.save_screening(session, person, public_id, keep)

    def save_screening(self, session: Session, person: Person, public_id: str, keep: bool) -> None:
        """`screen` inside a caller's session (no commit), for bulk writers."""
        if person.role != "screener":
            raise InvalidAnswer(f"{person.name} is a {person.role}, not the screener")
        image_id = _queued_image(session, person, public_id)
        self._upsert(session, ScreeningRow, {"image_id": image_id},
                     {"screener_id": person.id, "keep": bool(keep)})  # fmt: skip

    def rate(
        self,
        person: Person,
        public_id: str,
        scores: Mapping[str, object],
        external: bool | None = None,
    ) -> None:
        """Stores (or changes) a rater's scores of some segments and, if given, the flag.

        With SQLite, the writes of one process take turns on a lock: SQLite has one writer at
        a time, and waiting on a lock is quicker than its busy-timeout retries.
        """
        with self._write_lock, self.session() as session:
            self.save_rating(session, person, public_id, scores, external)

    def save_rating(
        self,
        session: Session,
        person: Person,
        public_id: str,
        scores: Mapping[str, object],
        external: bool | None = None,
    ) -> None:
        """`rate` inside a caller's session (no commit), for bulk writers.

        Raises:
            InvalidAnswer: for a non-rater, an unknown segment, a bad score or nothing to store.
            UnknownImage: for an image that is not in the rater's queue.
        """
        if person.role != "rater":
            raise InvalidAnswer(f"{person.name} is a {person.role}, not a rater")
        clean = _clean_scores(scores)
        if not clean and external is None:
            raise InvalidAnswer("nothing to store: give scores and/or external")
        image_id = _queued_image(session, person, public_id)
        for segment, score in clean.items():
            self._upsert(session, RatingRow,
                         {"image_id": image_id, "rater_id": person.id, "segment": segment},
                         {"score": score})  # fmt: skip
        if external is not None:
            self._upsert(session, ExternalFlagRow, {"image_id": image_id, "rater_id": person.id},
                         {"external": bool(external)})  # fmt: skip

    def screening_answers(self, person: Person) -> dict[str, bool]:
        """The screener's decisions by public id."""
        with self.session() as session:
            rows = session.execute(
                select(ImageRow.public_id, ScreeningRow.keep)
                .join(ScreeningRow, ScreeningRow.image_id == ImageRow.id)
                .where(ScreeningRow.screener_id == person.id)
            )
            return {public_id: keep for public_id, keep in rows}

    def rating_answers(self, person: Person) -> dict[str, RatingAnswer]:
        """A rater's own answers on the images of their queue, by public id."""
        queued = set(self.queue(person))
        scores: dict[str, dict[str, str]] = {}
        flags: dict[str, bool] = {}
        with self.session() as session:
            for public_id, segment, score in session.execute(
                select(ImageRow.public_id, RatingRow.segment, RatingRow.score)
                .join(RatingRow, RatingRow.image_id == ImageRow.id)
                .where(RatingRow.rater_id == person.id)
            ):
                scores.setdefault(public_id, {})[segment] = score
            for public_id, external in session.execute(
                select(ImageRow.public_id, ExternalFlagRow.external)
                .join(ExternalFlagRow, ExternalFlagRow.image_id == ImageRow.id)
                .where(ExternalFlagRow.rater_id == person.id)
            ):
                flags[public_id] = external
        answered = (set(scores) | set(flags)) & queued
        return {i: RatingAnswer(scores.get(i, {}), flags.get(i, False)) for i in answered}

    def screening_complete(self) -> bool:
        """Whether the screener has decided on every image."""
        with self.session() as session:
            images = session.scalar(select(func.count(ImageRow.id)))
            decided = session.scalar(select(func.count(ScreeningRow.id)))
        return images == decided

    def progress(self) -> list[Progress]:
        """Screener and raters with the number of images they have answered."""
        result = []
        for person in self.persons():
            if person.role == "screener":
                done, total = len(self.screening_answers(person)), len(self.queue(person))
            elif person.role == "rater":
                answers = self.rating_answers(person).values()
                done, total = sum(a.complete for a in answers), len(self.queue(person))
            else:
                continue
            result.append(Progress(person, done, total))
        return result

    def has_answers(self) -> bool:
        """Whether anyone has answered anything yet."""
        with self.session() as session:
            tables = (ScreeningRow.id, RatingRow.id, ExternalFlagRow.id)
            return any(session.scalar(select(func.count(column))) for column in tables)

    def _upsert(self, session: Session, model: type[Base], keys: dict, values: dict) -> None:
        now = utc_now()
        statement = self._insert(model).values(**keys, **values, created_at=now, updated_at=now)
        statement = statement.on_conflict_do_update(
            index_elements=list(keys), set_={**values, "updated_at": now}
        )
        session.execute(statement)


def _person_update(person: Person):
    return update(PersonRow).where(PersonRow.id == person.id)


def _clean_scores(scores: Mapping[str, object]) -> dict[str, str]:
    if not isinstance(scores, Mapping):
        raise InvalidAnswer("scores must map segment names to scores")
    clean = {}
    for segment, value in scores.items():
        if segment not in SEGMENTS:
            raise InvalidAnswer(f"unknown segment {segment!r}; use {', '.join(SEGMENTS)}")
        clean[segment] = normalise_score(value)
    return clean


def _queue_query(person: Person):
    query = (
        select(ImageRow.public_id)
        .join(QueueEntryRow, QueueEntryRow.image_id == ImageRow.id)
        .where(QueueEntryRow.person_id == person.id)
        .order_by(QueueEntryRow.position)
    )
    if person.role == "rater":
        query = query.join(ScreeningRow, ScreeningRow.image_id == ImageRow.id).where(
            ScreeningRow.keep.is_(True)
        )
    return query


def _queued_image(session: Session, person: Person, public_id: str) -> int:
    """The row id of an image in the person's queue, or UnknownImage."""
    if not isinstance(public_id, str) or not is_public_id(public_id):
        raise UnknownImage(f"no image {public_id!r} in your queue")
    query = _queue_query(person).where(ImageRow.public_id == public_id)
    image_id = session.scalar(query.with_only_columns(ImageRow.id))
    if image_id is None:
        raise UnknownImage(f"no image {public_id!r} in your queue")
    return image_id
