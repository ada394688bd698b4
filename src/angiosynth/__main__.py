"""`python -m angiosynth` (and `accelerate launch -m angiosynth ...`) runs the CLI."""

from angiosynth.cli.main import app

app()
