"""`dfpipe merge`: a thin layer over `dfpipe.manifests.merge.merge`."""

from __future__ import annotations

from pathlib import Path

import typer

from dfpipe.cli.common import console, fail


def merge(
    datasets: list[Path] = typer.Argument(..., metavar="DATASET...", help="Dataset directories to merge."),
    out: Path = typer.Option(..., "--out", help="The merged dataset directory (new, or one to add to)."),
) -> None:
    """Merge dataset directories into one, for training or scoring them together: each
    video once (ids are content hashes), with its label, lineage, split, faces and masks.

    Quality scores and the splits a training run kept are not carried: score and train on
    the merged dataset. Re-running adds what the inputs gained. Exit status 0 when merged,
    2 on a bad argument (nothing written).
    """
    from dfpipe.manifests.merge import merge

    try:
        summary = merge(datasets, out)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(f"merged {summary.added} new videos into {out} ({summary.kept} were there already); "
                  f"check it with: dfpipe validate {out}")


def register(app: typer.Typer) -> None:
    app.command("merge")(merge)
