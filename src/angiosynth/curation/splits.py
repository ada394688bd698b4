"""Patient pseudonyms and patient-level splits.

Pseudonyms are keyed hashes (HMAC-SHA256) of the original Patient ID (or Patient Name when the ID
is empty): the same patient always gets the same pseudonym under one key, nobody without the key
can test a guessed ID, and the original never reaches the dataset. The key lives outside the
dataset (default: a file next to it), so sharing the dataset does not share the key.

Splits are drawn per pseudonym from a seeded hash, so they are stable when a curation run is
resumed or the archive grows, and no patient is ever in two splits.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from angiosynth.errors import OptionError
from angiosynth.runfiles import atomic_path

SPLITS = ("train", "val", "test")


def load_or_create_key(path: Path) -> bytes:
    """Reads the pseudonymisation key, creating a random one (mode 600) when missing.

    Raises:
        OptionError: the key file does not hold at least 16 bytes in hexadecimal.
    """
    path = Path(path)
    if path.exists():
        try:
            key = bytes.fromhex(path.read_text().strip())
        except ValueError as err:
            raise OptionError(f"{path}: pseudonymisation key is not hexadecimal") from err
        if len(key) < 16:
            raise OptionError(f"{path}: pseudonymisation key is too short")
        return key
    key = secrets.token_bytes(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key.hex() + "\n")
    return key


def pseudonymise(patient_id: str, patient_name: str, key: bytes) -> str:
    """A stable pseudonym ("P" + 16 hex digits) for a patient."""
    identity = patient_id.strip() or f"name:{patient_name.strip()}"
    digest = hmac.new(key, identity.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"P{digest[:16]}"


def split_of(pseudonym: str, seed: int, fractions: tuple[float, float, float]) -> str:
    """The split of a patient: a uniform draw from (seed, pseudonym) cut at the fractions."""
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise OptionError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    digest = hashlib.sha256(f"{seed}|{pseudonym}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    edge = 0.0
    for name, fraction in zip(SPLITS, fractions, strict=True):
        edge += fraction
        if u < edge:
            return name
    return SPLITS[-1]
