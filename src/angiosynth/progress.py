"""The one type of progress callbacks the library accepts, and how it applies one.

A `Progress` wraps an iterable of `total` items with a description and yields the same items
(the command line passes a tqdm bar); the library never prints bars itself. Like `config`, this
module imports nothing else from angiosynth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

Progress = Callable[[Iterable, int, str], Iterable]


def tracked(items: Iterable[T], total: int, desc: str, progress: Progress | None) -> Iterator[T]:
    """`items` through `progress` when one is given, else unchanged."""
    return iter(progress(items, total, desc) if progress is not None else items)
