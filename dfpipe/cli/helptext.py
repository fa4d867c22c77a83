"""How `--help` reads at 80 columns.

The app uses click's help formatting (`rich_markup_mode=None` in `main.py`): Typer's rich
panels cut option names ("--no-include-re…") and long defaults at 80 columns and kept the
docstrings' hard line breaks; click rewraps each paragraph to the terminal and puts a long
option's help on the next line. What click does not do well, the command list, is here.
"""

from __future__ import annotations

import inspect
import re

import typer


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    match = re.match(r"(.+?\.)(?:\s|$)", paragraph)
    return match.group(1) if match else paragraph


def list_commands_by_first_sentence(app: typer.Typer) -> None:
    """`dfpipe --help` lists each command with its first sentence, whole and wrapped
    (click would cut the first paragraph at the terminal's width with "...")."""
    for info in app.registered_commands:
        if info.short_help is None and info.callback is not None and info.callback.__doc__:
            info.short_help = first_sentence(inspect.getdoc(info.callback) or "")
