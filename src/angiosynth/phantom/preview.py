"""Contact sheet of an archive: arterial-phase DSA of each view and circulation.

The sheet is made from the written DICOM files (read back, log-subtracted with the mask frames
their Mask Subtraction Sequence names), so it also checks the archive end to end.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from angiosynth.dicom.subtraction import dsa_display, log_subtract
from angiosynth.dicom.xa import read_xa
from angiosynth.runfiles import save_figure_atomic

_EXTRA_COLUMNS = ("Others", "external", "common_carotid")


def representative_frames(truth: pd.DataFrame) -> pd.DataFrame:
    """Per series, the arterial-phase frame with the highest distal opacification."""
    arterial = truth[truth["is_arterial"]]
    return arterial.loc[arterial.groupby("series_uid")["arterial_opacity"].idxmax()]


def write_preview(archive: Path, out: Path, rows: int = 3, dpi: int = 110) -> Path:
    """Writes a PNG contact sheet: columns AC A, AC B, PC A, PC B (and non-canonical examples).

    Args:
        archive: an archive written by `write_archive`.
        out: the PNG to write.
        rows: examples per column (different series, patients where possible).
        dpi: resolution of the PNG.
    """
    truth = pd.read_parquet(Path(archive) / "ground_truth.parquet")
    picks = representative_frames(truth[truth["injection"] != "unlabelled"])
    columns = ("AC A", "AC B", "PC A", "PC B")  # the paper's conditions, by circulation
    panels = {c: picks[picks["view"] == c] for c in columns}
    panels["Others"] = picks[picks["view"] == "Others"]
    panels["external"] = picks[picks["circulation"] == "external"]
    panels["common_carotid"] = picks[picks["circulation"] == "common_carotid"]
    names = [c for c in (*columns, *_EXTRA_COLUMNS) if len(panels[c])]
    fig, axes = plt.subplots(
        rows, len(names), figsize=(2.6 * len(names), 2.9 * rows), squeeze=False
    )
    for j, name in enumerate(names):
        chosen = panels[name].drop_duplicates("patient_id").head(rows)
        for i in range(rows):
            ax = axes[i, j]
            ax.set_axis_off()
            if i < len(chosen):
                _draw(ax, Path(archive), chosen.iloc[i], name)
    fig.suptitle(f"angiosynth phantom: arterial-phase DSA ({Path(archive).name})", fontsize=10)
    fig.tight_layout()
    out = Path(out)
    save_figure_atomic(fig, out, dpi)
    plt.close(fig)
    return out


def _draw(ax, archive: Path, row: pd.Series, column: str) -> None:
    series = read_xa(archive / row["file"])
    dsa = log_subtract(series.frames, series.mask_frames)[int(row["frame_index"])]
    ax.imshow(dsa_display(dsa, series.shutter), cmap="gray", vmin=0, vmax=1)
    angles = f"{row['primary_angle']:+.0f}/{row['secondary_angle']:+.0f}°"
    title = f"{column}\n{row['series_description']} · {angles}"
    ax.set_title(title, fontsize=7)
