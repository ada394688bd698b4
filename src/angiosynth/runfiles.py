"""Files of run directories: their names, and the one way every output is written.

Every writer puts its output under a temporary name beside the target and renames it into place
only when complete, so an interrupted or failed run never leaves half a file or half a folder
and never destroys what was there before. Like `config`, this module imports nothing else from
angiosynth.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

#: The resolved configuration of a training run (YAML, keys in the config's order).
CONFIG_FILE = "config.yaml"
#: The configuration of a saved model directory (JSON, as diffusers' `save_pretrained` writes).
MODEL_CONFIG_FILE = "config.json"
#: A model's weights (safetensors; never pickled).
MODEL_FILE = "model.safetensors"
#: One JSON record per logged step or epoch.
LOG_FILE = "log.jsonl"
#: What a run measured at its end.
METRICS_FILE = "metrics.json"


@contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yields a temporary path beside `path`; renames it onto `path` when the block succeeds and
    removes it when the block raises.

    Args:
        path: the final file.
        suffix: ending of the temporary name, for writers that add or read one (np.save: ".npy").
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yields an empty temporary folder beside `path`; when the block succeeds it replaces `path`
    (an existing folder is moved aside first and deleted after), when it raises it is removed."""
    path = Path(path)
    building = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        yield building
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(building, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(building, path)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Writes `text`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: Path, data: dict) -> None:
    """Writes `data` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_jsonl_atomic(path: Path, records: list[dict]) -> None:
    """Writes one JSON object per line, atomically."""
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def write_yaml_atomic(path: Path, data: dict) -> None:
    """Writes `data` as YAML (keys in the given order), atomically."""
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))


def append_jsonl(path: Path, record: dict) -> None:
    """Appends one JSON line (a log that grows during training; a cut-off run keeps its lines)."""
    with Path(path).open("a") as f:
        f.write(json.dumps(record) + "\n")


def write_table_atomic(table, path: Path) -> None:
    """Writes a pandas DataFrame as Parquet, or CSV when `path` ends in .csv, atomically."""
    with atomic_path(path) as tmp:
        if Path(path).suffix == ".csv":
            table.to_csv(tmp, index=False)
        else:
            table.to_parquet(tmp, index=False)


def save_figure_atomic(figure, path: Path, dpi: int = 150) -> None:
    """Saves a matplotlib figure in the format of `path`'s suffix (png, pdf, svg), atomically."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip("."))


def save_tensors_atomic(tensors: dict, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Saves named tensors as safetensors (moved to CPU, made contiguous), atomically."""
    from safetensors.torch import save_file

    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp), metadata=metadata)
