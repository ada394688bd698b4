"""Exporting a reader study's answers as two CSV files, the input of `reader-study analyze`.

ratings.csv, long format, one row per image x rater x segment answered, sorted by image_id,
rater, segment (proximal, medium, peripheral):

    image_id    opaque image id (16 hex digits; the file STUDY/images/<image_id>.png)
    condition   the image's condition ("AC A", "PC A", "AC B", "PC B" for the paper's design)
    rater       the rater's name
    segment     proximal, medium or peripheral
    score       1-5, NP (segment not present) or NA (not applicable)
    external    1 when the rater flagged the image as showing external circulation, else 0
                (one flag per image x rater, repeated on its segment rows)

screening.csv, one row per image the screener has decided on, sorted by image_id:

    image_id    as above
    condition   as above
    keep        1 kept (shown to raters), 0 discarded

Only images the screener keeps enter ratings.csv (a rater's queue is the kept images). Ratings
collected elsewhere can be analysed too when written with exactly these columns and values.

Spreadsheet formulas are neutralised (OWASP's advice against CSV injection): a text cell that
starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a single quote in front, so a
rater named "=HYPERLINK(...)" is written as "'=HYPERLINK(...)" and a spreadsheet shows it as
text instead of running it. This applies to every text cell of both files (condition, rater),
even one that reads as a negative number such as "-1": names and conditions are labels, not
numbers. Scores never start with these characters (they are 1-5, NP or NA), and external and
keep are written as the integers 0 and 1, so no value that `analyze` reads as a number
changes. Cells holding a comma, a quote, a tab or a line break (CR or LF) are quoted, so no cell
can start a row of its own. Both files are written by `to_csv_text`, which the admin page's
downloads use too.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sqlalchemy import select

from angiosynth.errors import OptionError
from angiosynth.readerstudy.schema import (
    SEGMENTS,
    ExternalFlagRow,
    ImageRow,
    PersonRow,
    RatingRow,
    ScreeningRow,
)
from angiosynth.readerstudy.storage import StudyStore
from angiosynth.runfiles import atomic_path

RATING_COLUMNS = ("image_id", "condition", "rater", "segment", "score", "external")
SCREENING_COLUMNS = ("image_id", "condition", "keep")
SCREENING_FILE = "screening.csv"
#: The first characters of a cell that a spreadsheet would run as a formula (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_QUOTED_CHARS = (",", '"', "\t", "\r", "\n")


def ratings_table(store: StudyStore) -> pd.DataFrame:
    """The ratings of kept images in the long format of ratings.csv."""
    query = (
        select(ImageRow.public_id, ImageRow.condition, PersonRow.name, RatingRow.segment,
               RatingRow.score, ExternalFlagRow.external)
        .join(RatingRow, RatingRow.image_id == ImageRow.id)
        .join(PersonRow, PersonRow.id == RatingRow.rater_id)
        .join(ScreeningRow, ScreeningRow.image_id == ImageRow.id)
        .outerjoin(ExternalFlagRow, (ExternalFlagRow.image_id == ImageRow.id)
                   & (ExternalFlagRow.rater_id == RatingRow.rater_id))
        .where(ScreeningRow.keep.is_(True))
    )  # fmt: skip
    with store.session() as session:
        rows = session.execute(query).all()
    table = pd.DataFrame(rows, columns=list(RATING_COLUMNS))
    table["external"] = table["external"].fillna(False).astype(bool).astype(int)
    table["_segment"] = table["segment"].map(SEGMENTS.index)
    table = table.sort_values(["image_id", "rater", "_segment"], kind="stable")
    return table.drop(columns="_segment").reset_index(drop=True)


def screening_table(store: StudyStore) -> pd.DataFrame:
    """The screener's decisions in the format of screening.csv."""
    query = select(ImageRow.public_id, ImageRow.condition, ScreeningRow.keep).join(
        ScreeningRow, ScreeningRow.image_id == ImageRow.id
    )
    with store.session() as session:
        rows = session.execute(query).all()
    table = pd.DataFrame(rows, columns=list(SCREENING_COLUMNS))
    table["keep"] = table["keep"].astype(bool).astype(int)
    return table.sort_values("image_id").reset_index(drop=True)


def neutralise_formula(cell: object) -> object:
    """A text cell with a single quote in front when it starts like a spreadsheet formula
    (`=`, `+`, `-`, `@`, tab, carriage return); any other value unchanged."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def _csv_cell(cell: object) -> str:
    text = str(neutralise_formula(cell))
    if any(char in text for char in _QUOTED_CHARS):
        return '"' + text.replace('"', '""') + '"'
    return text


def to_csv_text(table: pd.DataFrame) -> str:
    """A table as the CSV text of the export files: a header row, no index, '\\n' line ends,
    formulas neutralised and cells with separators or line breaks quoted (module docstring).

    Python's csv writer would leave a lone carriage return unquoted when lines end in '\\n',
    and spreadsheets break the row there, hence this small writer of its own.
    """
    rows = [table.columns, *table.itertuples(index=False, name=None)]
    return "".join(",".join(_csv_cell(cell) for cell in row) + "\n" for row in rows)


def export_study(store: StudyStore, out: Path) -> tuple[Path, Path]:
    """Writes ratings.csv at `out` and screening.csv beside it (`to_csv_text`, atomically).

    Returns:
        The paths of the ratings and screening files.

    Raises:
        OptionError: `out` is named like the screening file.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    screening = out.with_name(SCREENING_FILE)
    if screening == out:
        raise OptionError(f"--out must not be named {SCREENING_FILE}: that is the screening file")
    for path, table in ((out, ratings_table(store)), (screening, screening_table(store))):
        with atomic_path(path) as tmp:  # UTF-8 bytes, the same as the admin's downloads
            tmp.write_bytes(to_csv_text(table).encode("utf-8"))
    return out, screening
