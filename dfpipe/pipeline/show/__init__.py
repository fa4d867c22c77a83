"""`dfpipe show DS`: look at a dataset. Writes `contact_sheet.png` (a row of crops per video,
masks outlined) and `index.html` (a gallery of the same crops beside their masks,
filterable by video, label and method) with its `img/` folder, by default in `DS/show/`.

Read-only on the dataset's tables; only the sampled crops are decoded, so it stays quick
on large datasets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfpipe.pipeline.show.gallery import write_gallery
from dfpipe.pipeline.show.render import overlay, sheet_row, thumbnail, write_jpeg, write_sheet
from dfpipe.pipeline.show.sample import ShownVideo, sample_faces, select_videos

SHEET_NAME = "contact_sheet.png"
PAGE_NAME = "index.html"


@dataclass
class ShowResult:
    sheet: Path
    page: Path
    n_videos: int  # videos shown (after the filters)
    n_faces: int  # faces sampled
    n_masks: int  # of them with a mask
    n_sheet_videos: int  # rows of the contact sheet (at most `sheet_videos`)
    seconds: float


def _sheet_title(v: ShownVideo) -> str:
    tags = [v.tag(k) for k in ("label", "method", "compression", "split")]
    tail = "" if v.faces else f" -- {v.tag('error_code') if v.tag('status') == 'error' else 'no faces'}"
    return " | ".join([v.name, *[t for t in tags if t != "-"]]) + tail


def _pictures(v: ShownVideo, size: int) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(face id, thumbnail, thumbnail with its mask or None) of each sampled face."""
    out = []
    for face in v.faces:
        thumb = thumbnail(face["image"], size)
        out.append((face["face_id"], thumb, overlay(thumb, face["mask"]) if face.get("mask") else None))
    return out


def _sheet_thumbs(pictures: list[tuple[str, np.ndarray, np.ndarray | None]]) -> list[np.ndarray]:
    """The sheet shows the masked thumbnail where there is one."""
    return [thumb if masked is None else masked for _, thumb, masked in pictures]


def show(
    dataset: str | Path,
    out: str | Path | None = None,
    per_video: int = 8,
    videos: list[str] | None = None,
    labels: list[str] | None = None,
    methods: list[str] | None = None,
    size: int = 128,
    sheet_videos: int = 60,
) -> ShowResult:
    """Write the contact sheet and the gallery of `dataset` (see the module docstring).
    `videos` (ids, file names or stems), `labels` and `methods` keep only matching videos;
    the gallery's own filters narrow further in the browser."""
    t0 = time.perf_counter()
    dataset = Path(dataset)
    out = dataset / "show" if out is None else Path(out)
    shown = select_videos(dataset, list(videos or []), list(labels or []), list(methods or []))
    sample_faces(dataset, shown, per_video)

    img_dir = out / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    images: dict[str, tuple[str, str | None]] = {}
    rows = []
    for v in shown:
        pictures = _pictures(v, size)
        for face_id, thumb, masked in pictures:
            images[face_id] = (f"img/{face_id}.jpg", None if masked is None else f"img/{face_id}-mask.jpg")
            for name, rgb in zip(images[face_id], (thumb, masked)):
                if name:
                    write_jpeg(rgb, out / name)
        if len(rows) < sheet_videos:
            rows.append(sheet_row(_sheet_thumbs(pictures), per_video, size, _sheet_title(v)))
    used = {Path(p).name for pair in images.values() for p in pair if p}
    for stale in img_dir.glob("*.jpg"):  # from an earlier run with other filters
        if stale.name not in used:
            stale.unlink()

    sheet = write_sheet(rows, out / SHEET_NAME, per_video * size)
    page = write_gallery(shown, images, out / PAGE_NAME, title=f"dfpipe show {dataset}", size=size,
                         sheet_name=SHEET_NAME)
    n_masks = sum(masked is not None for _, masked in images.values())
    return ShowResult(sheet=sheet, page=page, n_videos=len(shown), n_faces=len(images), n_masks=n_masks,
                      n_sheet_videos=len(rows), seconds=time.perf_counter() - t0)


def contact_sheet(dataset: str | Path, out_png: str | Path, per_video: int = 6, thumb: int = 128) -> Path:
    """Only the contact sheet, at `out_png` (what `make demo` writes)."""
    shown = select_videos(dataset, [], [], [])
    sample_faces(dataset, shown, per_video)
    rows = [sheet_row(_sheet_thumbs(_pictures(v, thumb)), per_video, thumb, _sheet_title(v)) for v in shown]
    return write_sheet(rows, out_png, per_video * thumb)


__all__ = ["ShowResult", "show", "contact_sheet"]
