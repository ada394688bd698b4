"""Files of run directories, written so that an interrupted run never leaves half a file.

Like `config`, this module imports nothing else from angiosynth.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml


def write_json_atomic(path: Path, data: dict) -> None:
    """Writes `data` as indented JSON under a temporary name, then renames it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def write_jsonl_atomic(path: Path, records: list[dict]) -> None:
    """Writes one JSON object per line, atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    os.replace(tmp, path)


def write_yaml_atomic(path: Path, data: dict) -> None:
    """Writes `data` as YAML (keys in the given order), atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)


def append_jsonl(path: Path, record: dict) -> None:
    """Appends one JSON line (a log that grows during training)."""
    with Path(path).open("a") as f:
        f.write(json.dumps(record) + "\n")
