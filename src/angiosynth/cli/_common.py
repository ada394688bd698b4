"""Helpers shared by the CLI modules: one-line errors and progress bars."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NoReturn, TypeVar

import typer
from tqdm import tqdm

T = TypeVar("T")


def fail(message: str) -> NoReturn:
    """Prints a one-line error to stderr and exits with status 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def progress_bar(items: Iterable[T], total: int, desc: str) -> Iterator[T]:
    """Wraps an iterable of `total` items in a tqdm progress bar."""
    yield from tqdm(items, total=total, desc=desc, dynamic_ncols=True)
