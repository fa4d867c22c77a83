"""`dfpipe ingest`: list a public dataset (FF++, DFDC, Celeb-DF, a CSV/JSON listing) into DS/videos/."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    def ingest(
        kind: str = typer.Argument(..., help="Dataset layout: ff++, dfdc, celebdf, or list (a CSV/JSON listing)."),
        root: Path = typer.Argument(..., help="The dataset's root folder (for `list`: the listing file)."),
        out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to write DS/videos/ into."),
        compression: Optional[List[str]] = typer.Option(
            None, "--compression", "-c", help="FF++ only: c0, c23, c40 or raw; repeat for several (default c23)."
        ),
        splits: Optional[Path] = typer.Option(
            None, "--splits", help="FF++ only: folder with the official train/val/test.json (default ROOT/splits)."
        ),
    ) -> None:
        """List a dataset's videos with labels, methods, real/fake pairs and splits, as pending rows
        that `dfpipe extract DS` then processes (fakes reuse their source's face tracks)."""
        from dfpipe.pipeline.ingest.summary import run_ingest

        raise typer.Exit(run_ingest(kind, root, out, compression, splits))
