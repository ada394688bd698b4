"""`angiosynth` console script: one typer app, one module per command group."""

from __future__ import annotations

import typer

from angiosynth import __version__
from angiosynth.cli import (
    curate,
    evaluate,
    phantom,
    phase,
    readerstudy,
    sample,
    segment,
    train,
    translate,
)

app = typer.Typer(
    name="angiosynth",
    help="Synthetic X-ray angiography: DSA phantom, curation, latent diffusion, contrast-free "
    "translation, evaluation, reader studies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
app.command("phantom")(phantom.phantom)
app.command("curate")(curate.curate_command)
app.add_typer(phase.app, name="phase")
app.add_typer(train.app, name="train")
app.command("sample")(sample.sample_command)
app.command("translate")(translate.translate_command)
app.command("segment")(segment.segment_command)
app.add_typer(readerstudy.app, name="reader-study")
app.command("evaluate")(evaluate.evaluate_command)
app.command("fid")(evaluate.fid_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"angiosynth {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Synthetic X-ray angiography toolkit."""


if __name__ == "__main__":  # `python -m angiosynth.cli.main`, e.g. under `accelerate launch -m`
    app()
