"""`dfpipe export BENCH --format hf|webdataset --out SHARE`: the faces in the formats users load.

- `hf`: Parquet files `data/<split>-NNNNN-of-MMMMM.parquet` that `datasets.load_dataset`
  reads with their features (the `huggingface` schema metadata and the README's YAML both
  declare `image` an Image, `label` a ClassLabel of real / fake), and the card as the
  README, its pictures under `card/`. `val` is named `validation`, as the Hub names it.
- `webdataset`: tar shards `shards/<split>-NNNNNN.tar`, each face a sample `<key>.<png|jpg>`
  (the crop as stored), `<key>.mask.png` (when it has one), `<key>.cls` (0 real, 1 fake)
  and `<key>.json` (its ids, method, compression, split, identity); `dfpipe train` reads
  such shards back (`train/shards.py`).

Faces are written in video order, the bytes as stored: no re-encoding, so an export is
exactly the benchmark's crops. Each face's split is the one training would use (given, or
made by source group). BENCH is a build folder (its `benchmark/` or `dataset/`, and
`card/`) or a dataset directory.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from dfpipe.manifests.parts import list_parts, read_table
from dfpipe.manifests.schema import VIDEOS_SCHEMA

FORMATS = ("hf", "webdataset")
HF_SPLITS = {"train": "train", "val": "validation", "test": "test"}
#: faces per Parquet file / tar shard
FACES_PER_FILE = 2000
LABELS = ("real", "fake")
_FACE_COLUMNS = ["face_id", "video_id", "frame_index", "track_id", "image", "image_format", "mask", "mask_source",
                 "label", "split"]
_META_COLUMNS = ["video_id", "frame_index", "track_id", "method", "compression", "split", "identity", "dataset",
                 "source_video_id", "target_video_id", "mask_source"]


@dataclass
class ExportSummary:
    out: Path
    format: str
    faces: dict[str, int] = field(default_factory=dict)  # split -> faces
    files: list[Path] = field(default_factory=list)


def dataset_of(bench: Path) -> Path:
    """The dataset directory of a build folder (`benchmark/` when its reals were re-encoded,
    else `dataset/`), or `bench` itself when it is one."""
    if (bench / "benchmark" / "videos").is_dir():
        return bench / "benchmark"
    if (bench / "dataset" / "videos").is_dir():
        return bench / "dataset"
    if (bench / "videos").is_dir():
        return bench
    raise FileNotFoundError(f"{bench}: neither a build folder (no dataset/) nor a dataset directory (no videos/)")


def _videos(dataset: Path) -> dict[str, dict]:
    from dfpipe.build.splits import meta_of

    rows = read_table(dataset, "videos", VIDEOS_SCHEMA).to_pylist()
    return {r["video_id"]: {**r, "identity": meta_of(r["meta"]).get("identity")} for r in rows}


def face_splits(dataset: Path) -> dict[str, tuple[str, str]]:
    """face_id -> (label, split) of every labelled face, from the index columns only. Splits
    are resolved as training resolves them (`train.data.load_index`, seed 0: the given ones,
    else by source group), so an export and a training run on it agree."""
    from dfpipe.train.data import DataError, load_index

    try:
        table = load_index(dataset).table
    except DataError as exc:
        raise ValueError(str(exc)) from exc
    table = table[table["label"].isin(LABELS)]
    return dict(zip(table["face_id"], zip(table["label"], table["split"])))


def iter_faces(dataset: Path, resolved: dict[str, tuple[str, str]]) -> Iterator[dict]:
    """Every face of `resolved` with its video's columns, one faces part at a time."""
    videos = _videos(dataset)
    for part in list_parts(dataset, "faces"):
        names = pq.ParquetFile(part).schema_arrow.names
        table = pq.read_table(part, columns=[c for c in _FACE_COLUMNS if c in names])
        for face in table.to_pylist():
            if face["face_id"] not in resolved:
                continue
            label, split = resolved[face["face_id"]]
            video = videos.get(face["video_id"], {})
            yield {**face, "label": label, "split": split, "method": video.get("method"),
                   "compression": video.get("compression"), "identity": video.get("identity"),
                   "dataset": video.get("dataset"), "source_video_id": video.get("source_video_id"),
                   "target_video_id": video.get("target_video_id")}


def export(bench: str | Path, format: str, out: str | Path, faces_per_file: int = FACES_PER_FILE) -> ExportSummary:
    """Write the benchmark's faces under `out` as `format` (see the module docstring).

    Faces stream through: a file's worth per split is held at a time, never the dataset."""
    from collections import Counter

    if format not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    bench, out = Path(bench), Path(out)
    dataset = dataset_of(bench)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: export into a new folder")
    resolved = face_splits(dataset)
    counts = Counter(split for _, split in resolved.values())
    summary = ExportSummary(out, format, dict(sorted(counts.items())))
    n_files = {s: -(-n // faces_per_file) for s, n in counts.items()}
    out.mkdir(parents=True, exist_ok=True)
    writer = _write_hf if format == "hf" else _write_shards
    buffers: dict[str, list[dict]] = {s: [] for s in counts}
    written: dict[str, int] = {s: 0 for s in counts}

    def flush(split: str) -> None:
        summary.files.append(writer(out, split, written[split], n_files[split], buffers[split]))
        written[split] += 1
        buffers[split] = []

    for face in iter_faces(dataset, resolved):
        buffers[face["split"]].append(face)
        if len(buffers[face["split"]]) >= faces_per_file:
            flush(face["split"])
    for split in sorted(buffers):
        if buffers[split]:
            flush(split)
    summary.files.sort()
    if format == "hf":
        _write_readme(bench, out, summary)
    return summary


# ----------------------------------------------------------------------------- Hugging Face

_HF_FEATURES = {
    "image": {"_type": "Image"},
    "mask": {"_type": "Image"},
    "label": {"names": list(LABELS), "_type": "ClassLabel"},
    "face_id": {"dtype": "string", "_type": "Value"},
    **{c: {"dtype": "string" if c not in ("frame_index", "track_id") else "int64", "_type": "Value"}
       for c in _META_COLUMNS},
}
_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
HF_SCHEMA = pa.schema(
    [pa.field("image", _IMAGE), pa.field("mask", _IMAGE), pa.field("label", pa.int64()), pa.field("face_id", pa.string()),
     *[pa.field(c, pa.int64() if c in ("frame_index", "track_id") else pa.string()) for c in _META_COLUMNS]],
    metadata={"huggingface": json.dumps({"info": {"features": _HF_FEATURES}})},
)


def _write_hf(out: Path, split: str, i: int, n: int, faces: list[dict]) -> Path:
    name = HF_SPLITS.get(split, split)
    path = out / "data" / f"{name}-{i:05d}-of-{n:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = {"jpeg": "jpg"}
    rows = {
        "image": [{"bytes": f["image"], "path": f"{f['face_id']}.{ext.get(f.get('image_format') or 'png', 'png')}"}
                  for f in faces],
        "mask": [{"bytes": f["mask"], "path": f"{f['face_id']}.mask.png"} if f.get("mask") else None for f in faces],
        "label": [LABELS.index(f["label"]) for f in faces],
        "face_id": [f["face_id"] for f in faces],
        **{c: [f.get(c) for f in faces] for c in _META_COLUMNS},
    }
    pq.write_table(pa.Table.from_pydict(rows, schema=HF_SCHEMA), path, compression="zstd", row_group_size=256)
    return path


def _write_readme(bench: Path, out: Path, summary: ExportSummary) -> None:
    """The card as the dataset's README, with the Hub's YAML header (splits and features)."""
    import yaml

    splits = [HF_SPLITS.get(s, s) for s in summary.faces]
    header = {
        "configs": [{"config_name": "default",
                     "data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits]}],
        "dataset_info": {"features": [
            {"name": "image", "dtype": "image"}, {"name": "mask", "dtype": "image"},
            {"name": "label", "dtype": {"class_label": {"names": {i: n for i, n in enumerate(LABELS)}}}},
            {"name": "face_id", "dtype": "string"},
            *[{"name": c, "dtype": "int64" if c in ("frame_index", "track_id") else "string"} for c in _META_COLUMNS],
        ]},
        "task_categories": ["image-classification"],
        "tags": ["deepfake-detection", "dfpipe"],
    }
    card_dir = bench / "card"
    body = f"# {bench.name}\n\nFaces exported by dfpipe ({sum(summary.faces.values())} faces).\n"
    if (card_dir / "card.md").is_file():
        shutil.copytree(card_dir, out / "card", ignore=shutil.ignore_patterns("index.html"))
        body = (card_dir / "card.md").read_text()
        body = _prefix_links(body, "card/")
    (out / "README.md").write_text("---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n\n" + body)


def _prefix_links(markdown: str, prefix: str) -> str:
    import re

    return re.sub(r"!\[([^\]]*)\]\((?!https?://)([^)]+)\)", lambda m: f"![{m.group(1)}]({prefix}{m.group(2)})", markdown)


# ----------------------------------------------------------------------------- WebDataset


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # the same faces give the same bytes
    tar.addfile(info, io.BytesIO(data))


def _write_shards(out: Path, split: str, i: int, n: int, faces: list[dict]) -> Path:
    path = out / "shards" / f"{split}-{i:06d}.tar"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    with tarfile.open(tmp, "w") as tar:
        for f in faces:
            key = f["face_id"].replace(".", "_")
            ext = "jpg" if f.get("image_format") == "jpeg" else "png"
            _add(tar, f"{key}.{ext}", f["image"])
            if f.get("mask"):
                _add(tar, f"{key}.mask.png", f["mask"])
            _add(tar, f"{key}.cls", str(LABELS.index(f["label"])).encode())
            meta = {"face_id": f["face_id"], "label": f["label"], **{c: f.get(c) for c in _META_COLUMNS}}
            _add(tar, f"{key}.json", json.dumps(meta, sort_keys=True).encode())
    tmp.rename(path)
    return path


__all__ = ["FORMATS", "ExportSummary", "dataset_of", "export", "iter_faces"]
