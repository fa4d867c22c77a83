"""The `dfpipe` Typer app. Each command lives in its own module with a `register(app)`
function; this file only wires them together and sets logging once."""

from __future__ import annotations

import importlib
import logging

import typer

from dfpipe.cli.helptext import list_commands_by_first_sentence

app = typer.Typer(
    name="dfpipe",
    help="Turn folders of videos into measured deepfake-detection benchmarks, and train detectors on them.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    rich_markup_mode=None,  # click's help: fits 80 columns (cli/helptext.py)
)

# One module per command group, registered explicitly (no import-time magic).
COMMAND_MODULES = [
    "dfpipe.cli.extract",
    "dfpipe.cli.inspect",
    "dfpipe.cli.show",
    "dfpipe.cli.ingest",
    "dfpipe.cli.masks",
    "dfpipe.cli.quality",
    "dfpipe.cli.train",
    "dfpipe.cli.synthesize",
    "dfpipe.cli.harmonizer",
    "dfpipe.cli.build",
    "dfpipe.cli.merge",
    "dfpipe.cli.perturb",
]


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)

list_commands_by_first_sentence(app)
