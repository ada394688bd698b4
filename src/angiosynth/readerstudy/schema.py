"""The tables of a reader study's database (SQLAlchemy 2 declarative models).

Tables:

    persons         id, name, role (screener / rater / admin), token_hash (SHA-256 hex of the
                    person's token; the token itself is never stored), issued_at (when the
                    current link was issued; empty for links of studies made before links
                    could be reissued: the person's created_at), expires_at (empty: never),
                    revoked_at (empty: not revoked)
    images          id, public_id (opaque random hex id, also the file name STUDY/images/<id>.png),
                    condition, source_file, prompt, seed, batch, sample_index, width, height
    queue_entries   person_id, image_id, position: each person's seeded random order
    screenings      image_id (unique), screener_id, keep
    ratings         image_id, rater_id, segment (proximal / medium / peripheral),
                    score ("1".."5", "NP" not present, "NA" not applicable); unique per
                    image x rater x segment
    external_flags  image_id, rater_id, external; unique per image x rater

Answers carry created_at and updated_at (UTC). `storage.StudyStore` reads and writes them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("screener", "rater", "admin")
SEGMENTS = ("proximal", "medium", "peripheral")
#: Stored scores: the Likert scale and the two codes of unratable segments.
SCORES = ("1", "2", "3", "4", "5", "NP", "NA")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (the time stamps of every row)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of the reader-study tables."""


class _Timestamps:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class PersonRow(Base):
    """A screener, rater or admin, known by the hash of their token."""

    __tablename__ = "persons"
    __table_args__ = (
        UniqueConstraint("name", "role"),
        CheckConstraint(f"role IN {ROLES}", name="known_role"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    issued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=utc_now)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


#: Columns added to tables after the first version, by table: `StudyStore.open` adds them to
#: the database of an older study (all nullable, so existing rows stay valid).
ADDED_COLUMNS = {"persons": ("issued_at", "expires_at", "revoked_at")}


class ImageRow(Base):
    """An imported image and the metadata that raters never see."""

    __tablename__ = "images"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(16), unique=True)
    condition: Mapped[str] = mapped_column(String(64))
    source_file: Mapped[str] = mapped_column(String(1024))
    prompt: Mapped[str | None] = mapped_column(String(1024))
    seed: Mapped[int | None] = mapped_column(Integer)
    batch: Mapped[int | None] = mapped_column(Integer)
    sample_index: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)


class QueueEntryRow(Base):
    """One image at one position of a person's order."""

    __tablename__ = "queue_entries"
    __table_args__ = (UniqueConstraint("person_id", "image_id"),
                      UniqueConstraint("person_id", "position"))  # fmt: skip
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    position: Mapped[int] = mapped_column(Integer)


class ScreeningRow(_Timestamps, Base):
    """The screener's keep/discard decision on one image."""

    __tablename__ = "screenings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), unique=True)
    screener_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    keep: Mapped[bool] = mapped_column(Boolean)


class RatingRow(_Timestamps, Base):
    """One rater's score of one segment of one image."""

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("image_id", "rater_id", "segment"),
        CheckConstraint(f"segment IN {SEGMENTS}", name="known_segment"),
        CheckConstraint(f"score IN {SCORES}", name="known_score"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    segment: Mapped[str] = mapped_column(String(16))
    score: Mapped[str] = mapped_column(String(2))


class ExternalFlagRow(_Timestamps, Base):
    """One rater's "external circulation" flag on one image."""

    __tablename__ = "external_flags"
    __table_args__ = (UniqueConstraint("image_id", "rater_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    rater_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    external: Mapped[bool] = mapped_column(Boolean)
