"""Helpers shared by the CLI modules: one-line errors, settings from YAML and options,
progress bars."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import typer
from pydantic import ValidationError
from tqdm import tqdm

from angiosynth.config import StrictModel, load_config
from angiosynth.errors import AngiosynthError

T = TypeVar("T")
Command = TypeVar("Command", bound=Callable)
Settings = TypeVar("Settings", bound=StrictModel)


def fail(message: str) -> NoReturn:
    """Prints a one-line error to stderr and exits with status 2."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def config_with_overrides(model: type[Settings], path: Path | None, options: dict) -> Settings:
    """The settings of the YAML file `path` (or the defaults) with the command-line `options`
    that differ from the defaults applied on top; a wrong value is a one-line error naming the
    option."""
    defaults = model()
    base = defaults if path is None else load_config(path, model)
    given = {k: v for k, v in options.items() if v != getattr(defaults, k)}
    try:
        return model.model_validate({**base.model_dump(), **given})
    except ValidationError as err:
        first = err.errors()[0]
        where = f"--{str(first['loc'][0]).replace('_', '-')}: " if first["loc"] else ""
        fail(where + first["msg"].removeprefix("Value error, "))


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
