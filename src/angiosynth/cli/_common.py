"""Helpers shared by the CLI modules: one-line errors and progress bars."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import NoReturn, TypeVar

import typer
from tqdm import tqdm

from angiosynth.errors import AngiosynthError

T = TypeVar("T")
Command = TypeVar("Command", bound=Callable)


def fail(message: str) -> NoReturn:
    """Prints a one-line error to stderr and exits with status 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def one_line_errors(command: Command) -> Command:
    """Wraps a command so that an `AngiosynthError` (bad input, configuration or output folder)
    ends it with a one-line message and status 2; any other exception keeps its traceback."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except AngiosynthError as err:
            fail(str(err))

    return run  # type: ignore[return-value]


def echo_above_bar(text: str) -> None:
    """Prints one line to stdout above an active progress bar (which is redrawn below it)."""
    tqdm.write(text)


def progress_bar(items: Iterable[T], total: int, desc: str) -> Iterator[T]:
    """Wraps an iterable of `total` items in a tqdm progress bar."""
    yield from tqdm(items, total=total, desc=desc, dynamic_ncols=True)
