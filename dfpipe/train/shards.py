"""WebDataset shards (`dfpipe export --format webdataset`) as a dataset training reads.

`dfpipe train SHARDS` takes a `.tar` shard, a folder of them, or a glob (`share/shards/train-*.tar`).
The shards are read once into a dataset directory under the cache (`$DFPIPE_HOME`, default
`~/.cache/dfpipe/shards/<digest>/`, keyed by the shards' names, sizes and times): one faces
part per shard with the crops' bytes as they are, and a videos row per video with its
label, method, compression, split and identity. Training then samples, balances and splits
exactly as on the benchmark it was exported from; a re-run on the same shards reuses the
index.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tarfile
from pathlib import Path

from dfpipe.manifests.parts import part_path, rows_to_table, write_part_atomic
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.runtime.files import write_text_atomic

_DONE = "shards.json"


def shard_files(source: str | Path) -> list[Path]:
    """The shards `source` names (a .tar, a folder holding .tar files, or a glob); [] if none."""
    text = str(source)
    if any(c in text for c in "*?["):
        return sorted(Path(p) for p in glob.glob(text) if p.endswith(".tar"))
    path = Path(source)
    if path.is_file() and path.suffix == ".tar":
        return [path]
    if path.is_dir() and not (path / "videos").is_dir():
        return sorted(path.glob("*.tar"))
    return []


def _cache_root() -> Path:
    home = os.environ.get("DFPIPE_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "dfpipe") / "shards"


def _digest(shards: list[Path]) -> str:
    h = hashlib.sha256()
    for s in shards:
        st = s.stat()
        h.update(f"{s.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _samples(shard: Path):
    """(key, {extension: bytes}) in shard order: a sample's files sit together."""
    key, files = None, {}
    with tarfile.open(shard) as tar:
        for member in tar:
            if not member.isfile():
                continue
            base, _, ext = member.name.rpartition("/")[2].partition(".")
            if key is not None and base != key:
                yield key, files
                files = {}
            key = base
            files[ext] = tar.extractfile(member).read()
    if key is not None:
        yield key, files


def dataset_from_shards(source: str | Path) -> Path:
    """The dataset directory indexing the shards of `source` (made once, then reused)."""
    shards = shard_files(source)
    if not shards:
        raise FileNotFoundError(f"{source}: no .tar shards there")
    root = _cache_root() / _digest(shards)
    if (root / _DONE).is_file():
        return root
    videos: dict[str, dict] = {}
    for shard in shards:
        rows = []
        for key, files in _samples(shard):
            if "json" not in files:
                raise ValueError(f"{shard}: sample {key} has no .json (not a dfpipe export)")
            meta = json.loads(files["json"])
            image_ext = next((e for e in ("png", "jpg") if e in files), None)
            if image_ext is None:
                raise ValueError(f"{shard}: sample {key} has no .png or .jpg crop")
            rows.append({"face_id": meta["face_id"], "video_id": meta["video_id"], "frame_index": meta["frame_index"],
                         "track_id": meta["track_id"], "image": files[image_ext],
                         "image_format": "jpeg" if image_ext == "jpg" else "png", "mask": files.get("mask.png"),
                         "mask_source": meta.get("mask_source"), "label": meta["label"], "split": meta.get("split")})
            videos.setdefault(meta["video_id"], {
                "video_id": meta["video_id"], "path": shard.name, "status": "ok", "label": meta["label"],
                "method": meta.get("method"), "compression": meta.get("compression"), "split": meta.get("split"),
                "dataset": meta.get("dataset"), "source_video_id": meta.get("source_video_id"),
                "target_video_id": meta.get("target_video_id"),
                "meta": json.dumps({"identity": meta["identity"]}) if meta.get("identity") else None})
        write_part_atomic(rows_to_table(rows, FACES_SCHEMA), part_path(root, "faces", shard.stem))
    for vid, row in videos.items():
        write_part_atomic(rows_to_table([row], VIDEOS_SCHEMA), part_path(root, "videos", vid))
    write_text_atomic(root / _DONE, json.dumps({"shards": [str(s.resolve()) for s in shards]}, indent=2))
    return root


def readable_datasets(sources: str | Path | list | tuple) -> tuple[list[Path], list[str]]:
    """The dataset directories that one source or several (dataset directories or shards)
    stand for, each shard set through its cached index; and notes on the shards read."""
    items = [sources] if isinstance(sources, (str, Path)) else list(sources)
    dirs, notes = [], []
    for source in items:
        shards = shard_files(source)
        if shards:
            dirs.append(dataset_from_shards(source))
            notes.append(f"read {len(shards)} WebDataset shard(s) through the index {dirs[-1]}")
        else:
            dirs.append(Path(source))
    return dirs, notes


def one_or_many(dirs: list[Path]) -> str | list[str]:
    """How a run's config records its data: a path, or a list of them for several."""
    return str(dirs[0]) if len(dirs) == 1 else [str(d) for d in dirs]


__all__ = ["dataset_from_shards", "one_or_many", "readable_datasets", "shard_files"]
