"""`curate`: walk a DICOM XA archive and write a labelled, patient-split dataset of DSA frames.

Steps: find files -> read headers (pixel data deferred) -> group by Series Instance UID -> label
each series (circulation by rules, plane, angles, view, pseudonymised patient, split) -> decode
the kept series into windowed DSA frames and native frames -> append to frames.zarr and
native.zarr and commit the tables. Bad files are listed in skipped.csv and the run goes on. A
second run over the same archive resumes: series already in series.parquet are not decoded again.
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from angiosynth.conditions import canonical_view
from angiosynth.curation import report
from angiosynth.curation.dataset import (
    FRAMES_FILE,
    NATIVE_FILE,
    SERIES_FILE,
    SETTINGS_FILE,
    SKIPPED_FILE,
    ZARR_FILE,
    DatasetError,
)
from angiosynth.curation.frames import decode_series
from angiosynth.curation.labels import frame_angles, plane_of
from angiosynth.curation.rules import CirculationRules, classify_circulation
from angiosynth.curation.splits import load_or_create_key, pseudonymise, split_of
from angiosynth.dicom.headers import Header, read_header
from angiosynth.dicom.xa import DicomReadError
from angiosynth.errors import InputNotFoundError, OptionError
from angiosynth.progress import Progress, tracked
from angiosynth.runfiles import write_json_atomic, write_table_atomic


@dataclass(frozen=True)
class CurateOptions:
    """Settings of a curation run.

    Attributes:
        size: side of the stored square frames.
        workers: processes for header reading and decoding.
        seed: seed of the patient split.
        split_fractions: train / val / test shares of patients.
        key_file: pseudonymisation key (created when missing).
        commit_every_s: seconds between commits of the tables while decoding.
    """

    size: int = 256
    workers: int = 1
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    key_file: Path | None = None
    commit_every_s: float = 20.0


@dataclass
class CurationSummary:
    """Counts of one curation run."""

    files: int = 0
    skipped_files: int = 0
    series: int = 0
    resumed_series: int = 0
    kept_series: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    frames: int = 0


def curate(
    archive: Path,
    out: Path,
    rules: CirculationRules,
    options: CurateOptions,
    progress: Progress | None = None,
) -> CurationSummary:
    """Curates `archive` into the dataset directory `out` (created or resumed).

    Raises:
        InputNotFoundError: `archive` is not a folder.
        OptionError: a size below 16.
        DatasetError: `out` was curated with other rules, size or seed, or before native frames
            were kept.
    """
    archive, out = Path(archive), Path(out)
    if not archive.is_dir():
        raise InputNotFoundError(f"{archive}: archive directory not found")
    if options.size < 16:
        raise OptionError(f"--size must be at least 16, got {options.size}")
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, options, rules, archive)
    key = load_or_create_key(options.key_file or out.with_name(out.name + ".pseudonym-key"))

    files = sorted(p for p in archive.rglob("*") if p.is_file() and not p.name.startswith("."))
    state = _State(out, options.size, archive)
    summary = CurationSummary(files=len(files))
    with _pool(options.workers) as pool:
        headers_read = pool.map(_header_or_error, files, chunksize=16)
        results = tracked(headers_read, len(files), "headers", progress)
        headers = []
        for path, result in zip(files, results, strict=True):
            if isinstance(result, Header):
                headers.append(result)
            else:
                state.skip(path, result)
        state.redact_with(headers, key)
        series, duplicates = _group(headers)
        for copy in duplicates:
            state.skip(copy.path, "duplicate of another file (same SOP Instance UID)")
        summary.series = len(series)
        todo = [uid for uid in series if uid not in state.done]
        summary.resumed_series = summary.series - len(todo)
        rows = {uid: _label_series(series[uid], rules, key, options) for uid in todo}
        state.add_series([r for r in rows.values() if r["excluded_reason"] is not None])
        kept = [uid for uid in todo if rows[uid]["excluded_reason"] is None]
        jobs = [([h.path for h in series[uid]], options.size) for uid in kept]
        decoded = tracked(pool.map(_decode_or_error, jobs), len(jobs), "decode", progress)
        last = time.monotonic()
        for uid, result in zip(kept, decoded, strict=True):
            state.add_decoded(rows[uid], series[uid], result)
            if time.monotonic() - last > options.commit_every_s:
                state.commit()
                last = time.monotonic()
    state.commit()
    _fill_summary(summary, state)
    report.write_report(out)
    return summary


def _pool(workers: int):
    """A process pool, or an in-process stand-in with the same `map` for one worker."""
    if workers > 1:
        return ProcessPoolExecutor(max_workers=workers)

    class _Serial:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        @staticmethod
        def map(fn, *iterables, chunksize=1):
            return map(fn, *iterables)

    return _Serial()


def _header_or_error(path: Path) -> Header | str:
    try:
        return read_header(path)
    except DicomReadError as err:
        return _reason(err, path)


def _decode_or_error(job: tuple[list[Path], int]):
    files, size = job
    try:
        return decode_series(files, size)
    except (DicomReadError, ValueError) as err:
        message = str(err)  # without file paths: they may contain patient names
        for number, path in enumerate(files, start=1):
            message = message.replace(f"{path}: ", f"instance {number}: " if len(files) > 1 else "")
        return message


def _reason(err: Exception, path: Path) -> str:
    """The error message without the file name (paths may contain patient names)."""
    return str(err).removeprefix(f"{path}: ")


def _group(headers: list[Header]) -> tuple[dict[str, list[Header]], list[Header]]:
    """Headers by Series Instance UID, each series in Instance Number order.

    Files repeating a SOP Instance UID (copies) are set aside: the largest file of each instance
    is used, since a truncated copy is smaller than the original.

    Returns:
        The series, and the duplicate files that were set aside.
    """
    by_instance: dict[str, list[Header]] = defaultdict(list)
    for header in headers:
        by_instance[header.sop_uid or str(header.path)].append(header)
    groups: dict[str, list[Header]] = defaultdict(list)
    duplicates = []
    for copies in by_instance.values():
        copies.sort(key=lambda h: (-h.path.stat().st_size, str(h.path)))
        groups[copies[0].series_uid].append(copies[0])
        duplicates.extend(copies[1:])
    ordered = {
        uid: sorted(hs, key=lambda h: (h.instance_number, str(h.path)))
        for uid, hs in groups.items()
    }
    return ordered, duplicates


def _label_series(headers: list[Header], rules, key: bytes, options: CurateOptions) -> dict:
    """The series.parquet row of a series (before decoding)."""
    first = headers[0]
    match = classify_circulation(first.texts, rules)
    plane, plane_source = plane_of(first)
    primary, secondary = first.primary_angle, first.secondary_angle
    patient = pseudonymise(first.patient_id, first.patient_name, key)
    view = ""
    if match.circulation != "excluded" and primary is not None and secondary is not None:
        view = canonical_view(match.circulation, plane, primary, secondary)
    reason = match.reason
    if reason is None and plane not in ("A", "B", "single"):
        reason = "unknown plane"
    if reason is None and (primary is None or secondary is None):
        reason = "missing positioner angles"
    return {
        "series_uid": first.series_uid,
        "study_uid": first.study_uid,
        "patient_id": patient,
        "split": split_of(patient, options.seed, options.split_fractions),
        "description": first.texts[0],
        "protocol_name": first.texts[1],
        "circulation": match.circulation if reason is None else "excluded",
        "plane": plane,
        "plane_source": plane_source,
        "primary_angle": primary,
        "secondary_angle": secondary,
        "view": view,
        "n_frames": sum(h.n_frames for h in headers),
        "frame_time_ms": first.frame_time_ms,
        "n_files": len(headers),
        "sop_class": first.sop_class,
        "transfer_syntax": first.transfer_syntax,
        "dsa_source": None,
        "excluded_reason": reason,
    }


class _State:
    """What is committed in a dataset directory, and what this run adds to it."""

    def __init__(self, out: Path, size: int, archive: Path) -> None:
        self.out, self.archive = out, archive
        series_path, frames_path = out / SERIES_FILE, out / FRAMES_FILE
        self.series = pd.read_parquet(series_path) if series_path.exists() else pd.DataFrame()
        self.frames = pd.read_parquet(frames_path) if frames_path.exists() else pd.DataFrame()
        skipped_path = out / SKIPPED_FILE
        self.skipped = pd.read_csv(skipped_path) if skipped_path.exists() else pd.DataFrame()
        self.done = set(self.series["series_uid"]) if len(self.series) else set()
        if len(self.frames) and not (out / NATIVE_FILE).exists():
            raise DatasetError(
                f"{out}: was curated before native frames were kept (no {NATIVE_FILE}); "
                "curate the archive again into a new dataset directory to add them"
            )
        self.array = self._open_array(out / ZARR_FILE, size, len(self.frames))
        self.native = self._open_array(out / NATIVE_FILE, size, len(self.frames))
        self._new_series: list[dict] = []
        self._new_frames: list[pd.DataFrame] = []
        self._new_skipped: list[dict] = []
        self._identities: dict[str, str] = {}

    @staticmethod
    def _open_array(path: Path, size: int, committed: int):
        if path.exists():
            array = zarr.open_array(path, mode="r+")
            if array.shape[1:] != (size, size):
                raise DatasetError(
                    f"{path}: stores {array.shape[1]}x{array.shape[2]} frames; "
                    f"resume with --size {array.shape[1]} or use a new dataset directory"
                )
            if array.shape[0] < committed:
                raise DatasetError(
                    f"{path}: holds {array.shape[0]} frames but {FRAMES_FILE} lists {committed}; "
                    "curate again into a new dataset directory"
                )
            if array.shape[0] > committed:  # frames of an interrupted run: drop them
                array.resize((committed, size, size))
            return array
        return zarr.create_array(
            store=path, shape=(0, size, size), chunks=(1, size, size), dtype="uint16"
        )

    def redact_with(self, headers: list[Header], key: bytes) -> None:
        """Remembers patient IDs and names so they can be removed from file paths."""
        for h in headers:
            pseudonym = pseudonymise(h.patient_id, h.patient_name, key)
            for part in h.patient_name.split("^"):  # name parts may be shared: no pseudonym
                if len(part.strip()) >= 3:
                    self._identities.setdefault(part.strip(), "[redacted]")
            for name in (h.patient_id, h.patient_name):
                if len(name.strip()) >= 3:
                    self._identities[name.strip()] = pseudonym

    def _redacted(self, path: Path) -> str:
        text = path.relative_to(self.archive).as_posix()
        for name in sorted(self._identities, key=len, reverse=True):
            text = re.sub(re.escape(name), self._identities[name], text, flags=re.IGNORECASE)
        return text

    def skip(self, path: Path, reason: str) -> None:
        self._new_skipped.append({"path": path, "reason": reason})

    def add_series(self, rows: list[dict]) -> None:
        self._new_series.extend(rows)

    def add_decoded(self, row: dict, headers: list[Header], result) -> None:
        """Appends a decoded series' DSA and native frames to the arrays (zeros as native
        frames of an already-subtracted series), or records why it failed."""
        if isinstance(result, str):
            row = {**row, "circulation": "excluded", "excluded_reason": f"undecodable: {result}"}
            for h in headers:
                self.skip(h.path, result)
            self._new_series.append(row)
            return
        start = int(self.array.shape[0])
        self.array.append(result.frames, axis=0)
        native = result.native if result.native is not None else np.zeros_like(result.frames)
        self.native.append(native, axis=0)
        self._new_frames.append(_frame_rows(row, headers, result, start))
        low, high = result.native_window or (np.nan, np.nan)
        self._new_series.append(
            {**row, "dsa_source": result.dsa_source, "native_low": low, "native_high": high}
        )

    def commit(self) -> None:
        """Replaces the tables with everything added so far (the arrays are already written)."""
        if self._new_frames:
            self.frames = pd.concat([self.frames, *self._new_frames], ignore_index=True)
        if self._new_series:
            self.series = pd.concat(
                [self.series, pd.DataFrame(self._new_series)], ignore_index=True
            )
        if self._new_skipped:
            rows = [{"file": self._redacted(s["path"]), "reason": s["reason"]}
                    for s in self._new_skipped]  # fmt: skip
            self.skipped = pd.concat([self.skipped, pd.DataFrame(rows)], ignore_index=True)
            self.skipped = self.skipped.drop_duplicates("file", keep="last")
        write_table_atomic(_with_columns(self.frames, FRAME_COLUMNS), self.out / FRAMES_FILE)
        write_table_atomic(_with_columns(self.series, SERIES_COLUMNS), self.out / SERIES_FILE)
        write_table_atomic(_with_columns(self.skipped, ["file", "reason"]), self.out / SKIPPED_FILE)
        self.done |= {r["series_uid"] for r in self._new_series}
        self._new_series, self._new_frames, self._new_skipped = [], [], []


SERIES_COLUMNS = [
    "series_uid", "study_uid", "patient_id", "split", "description", "protocol_name",
    "circulation", "plane", "plane_source", "primary_angle", "secondary_angle", "view",
    "n_frames", "frame_time_ms", "n_files", "sop_class", "transfer_syntax", "dsa_source",
    "native_low", "native_high", "excluded_reason",
]  # fmt: skip
FRAME_COLUMNS = [
    "frame_id", "series_uid", "patient_id", "split", "circulation", "plane", "frame_index",
    "time_s", "primary_angle", "secondary_angle", "view", "is_mask", "has_native",
]  # fmt: skip


def _with_columns(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The table with exactly these columns (added empty when missing, e.g. no rows yet)."""
    return table.reindex(columns=columns)


def _frame_rows(row: dict, headers: list[Header], decoded, start: int) -> pd.DataFrame:
    """frames.parquet rows of one decoded series."""
    primaries, secondaries = [], []
    for h in headers:
        p, s = frame_angles(h)
        primaries.append(p)
        secondaries.append(s)
    primary, secondary = np.concatenate(primaries), np.concatenate(secondaries)
    n = len(decoded.frames)
    frame_time = (row["frame_time_ms"] or 0.0) / 1000.0
    views = [
        canonical_view(row["circulation"], row["plane"], float(p), float(s))
        for p, s in zip(primary[:n], secondary[:n], strict=True)
    ]
    return pd.DataFrame(
        {
            "frame_id": np.arange(start, start + n),
            "series_uid": row["series_uid"],
            "patient_id": row["patient_id"],
            "split": row["split"],
            "circulation": row["circulation"],
            "plane": row["plane"],
            "frame_index": np.arange(n),
            "time_s": np.arange(n) * frame_time,
            "primary_angle": primary[:n],
            "secondary_angle": secondary[:n],
            "view": views,
            "is_mask": np.isin(np.arange(1, n + 1), decoded.mask_frames),
            "has_native": decoded.native is not None,
        }
    )


def _fill_summary(summary: CurationSummary, state: _State) -> None:
    series = state.series
    summary.skipped_files = len(state.skipped)
    summary.kept_series = int(series["excluded_reason"].isna().sum()) if len(series) else 0
    if len(series):
        summary.excluded = series["excluded_reason"].dropna().value_counts().to_dict()
    summary.frames = len(state.frames)


def _settings(options: CurateOptions, rules: CirculationRules, archive: Path) -> dict:
    return {
        "archive": str(archive.resolve()),
        "size": options.size,
        "seed": options.seed,
        "split_fractions": list(options.split_fractions),
        "rules": rules.model_dump()["rules"],
    }


def _check_settings(
    out: Path, options: CurateOptions, rules: CirculationRules, archive: Path
) -> None:
    """Records the run's settings; a resumed dataset must keep those that shaped its content."""
    path = out / SETTINGS_FILE
    if not path.exists():
        write_json_atomic(path, _settings(options, rules, archive))
        return
    previous = json.loads(path.read_text())
    if previous.get("rules") != rules.model_dump()["rules"]:
        raise DatasetError(
            f"{out}: was curated with other circulation rules; curate into a new dataset "
            "directory to apply new rules"
        )
    for name in ("size", "seed"):
        if previous.get(name) != getattr(options, name):
            raise DatasetError(
                f"{out}: was curated with --{name} {previous.get(name)}; resume with the same "
                f"value or use a new dataset directory"
            )
