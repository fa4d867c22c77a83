"""`dfpipe validate`: check a dataset directory against the schemas.

Problems are errors (broken references, wrong schemas, unreadable parts, bad values) or
warnings (orphans, leftover temporary files), each with a count, as lhotse's QA does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dfpipe.manifests.parts import list_parts
from dfpipe.manifests.schema import ERROR_CODES, LABELS, MESH_POINTS, SPLITS, TABLES, VIDEO_STATUS


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _same_columns(got: pa.Schema, want: pa.Schema) -> list[str]:
    problems = []
    for f in want:
        if f.name not in got.names:
            problems.append(f"missing column {f.name}")
        elif not got.field(f.name).type.equals(f.type):
            problems.append(f"column {f.name} is {got.field(f.name).type}, expected {f.type}")
    extra = [n for n in got.names if n not in want.names]
    if extra:
        problems.append(f"unexpected columns {', '.join(extra)}")
    return problems


def _read_parts(root: Path, name: str, report: Report, columns: list[str] | None = None) -> pa.Table | None:
    schema = TABLES[name]
    tables = []
    for part in list_parts(root, name):
        try:
            pf = pq.ParquetFile(part)
            problems = _same_columns(pf.schema_arrow, schema)
            if problems:
                report.errors.append(f"{part.relative_to(root)}: {'; '.join(problems)}")
                continue
            tables.append(pf.read(columns=columns))
        except Exception as exc:  # corrupt file
            report.errors.append(f"{part.relative_to(root)}: unreadable Parquet ({exc})")
    leftovers = list((root / name).glob(".tmp-*")) if (root / name).is_dir() else []
    if leftovers:
        report.warnings.append(f"{name}/: {len(leftovers)} temporary file(s) from an interrupted run (harmless; rerun to finish)")
    if not tables:
        return None
    return pa.concat_tables(tables)


def _non_null(table: pa.Table, name: str, report: Report) -> None:
    for f in TABLES[name]:
        if not f.nullable and f.name in table.column_names and table[f.name].null_count:
            report.errors.append(f"{name}: {table[f.name].null_count} null value(s) in required column {f.name}")


def validate(dataset: str | Path, deep: bool = False) -> Report:
    """Check dataset directory `dataset`; with `deep`, also decode every image and mask."""
    root = Path(dataset)
    report = Report()
    if not root.is_dir():
        report.errors.append(f"{root} is not a directory")
        return report
    if not (root / "run.json").is_file():
        report.warnings.append("run.json is missing (was this made by dfpipe?)")
    videos = _read_parts(root, "videos", report)
    if videos is None:
        report.errors.append("videos/ holds no readable part files")
        return report
    _non_null(videos, "videos", report)
    v = videos.to_pydict()
    report.counts["videos"] = videos.num_rows
    dup = [k for k, n in Counter(v["video_id"]).items() if n > 1]
    if dup:
        report.errors.append(f"videos: {len(dup)} video_id(s) appear more than once, e.g. {dup[0]}")
    bad_status = Counter(s for s in v["status"] if s not in VIDEO_STATUS)
    if bad_status:
        report.errors.append(f"videos: unknown status values {dict(bad_status)}")
    for vid, status, code in zip(v["video_id"], v["status"], v["error_code"]):
        if status == "error" and code not in ERROR_CODES:
            report.errors.append(f"videos: {vid} has status error with unknown error_code {code!r}")
    bad_labels = Counter(x for x in v["label"] if x not in LABELS)
    if bad_labels:
        report.errors.append(f"videos: unknown labels {dict(bad_labels)}")
    bad_splits = Counter(x for x in v["split"] if x is not None and x not in SPLITS)
    if bad_splits:
        report.errors.append(f"videos: unknown splits {dict(bad_splits)}")
    ids = set(v["video_id"])
    for kind in ("source_video_id", "target_video_id"):
        missing = {x for x in v[kind] if x and x not in ids}
        if missing:
            report.warnings.append(f"videos: {len(missing)} {kind} value(s) not in this dataset (pairs incomplete)")

    _check_stage_tables(root, ids, report)
    columns = None if deep else [c for c in TABLES["faces"].names if c not in ("image", "mask")]
    faces = _read_parts(root, "faces", report, columns)
    if faces is None:
        report.counts["faces"] = 0
        return report
    _non_null(faces, "faces", report)
    f = faces.to_pydict()
    report.counts["faces"] = faces.num_rows
    dup = [k for k, n in Counter(f["face_id"]).items() if n > 1]
    if dup:
        report.errors.append(f"faces: {len(dup)} face_id(s) appear more than once, e.g. {dup[0]}")
    status = dict(zip(v["video_id"], v["status"]))
    broken = Counter(x for x in f["video_id"] if x not in status)
    if broken:
        report.errors.append(f"faces: {sum(broken.values())} row(s) reference {len(broken)} video_id(s) missing from videos/")
    per_video = Counter(f["video_id"])
    for vid, n_faces in zip(v["video_id"], v["n_faces"]):
        if status[vid] == "ok" and n_faces is not None and per_video.get(vid, 0) != n_faces:
            report.errors.append(f"videos: {vid} says {n_faces} faces, faces/ holds {per_video.get(vid, 0)}")
    for name, n in (("landmarks", 10), ("matrix", 6)):
        bad = sum(1 for x in f[name] if x is not None and len(x) != n)
        if bad:
            report.errors.append(f"faces: {bad} row(s) with a {name} list not of length {n}")
    _check_geometry(faces, report)
    if deep:
        _check_images(f, report)
    return report


def _check_geometry(faces: pa.Table, report: Report) -> None:
    """Face meshes finite and on their face (centre inside the box), scores and angles in range."""
    mesh = faces["mesh"].combine_chunks()
    has = np.asarray(mesh.is_valid())
    if has.any():
        pts = np.asarray(mesh.filter(mesh.is_valid()).flatten(), dtype=np.float32).reshape(-1, MESH_POINTS, 3)
        bad = int((~np.isfinite(pts).all(axis=(1, 2))).sum())
        if bad:
            report.errors.append(f"faces: {bad} mesh(es) with non-finite values")
        box = np.stack([np.asarray(faces[c].filter(mesh.is_valid()), dtype=np.float64) for c in ("x1", "y1", "x2", "y2")], 1)
        centre = np.nanmean(pts[..., :2], axis=1)
        off = ((centre < box[:, :2]) | (centre > box[:, 2:])).any(axis=1)
        if off.any():
            report.errors.append(f"faces: {int(off.sum())} mesh(es) centred outside their face box (mesh of another face?)")
    score = np.asarray(faces["mesh_score"].to_numpy(zero_copy_only=False), dtype=np.float64)
    if np.nansum((score < 0) | (score > 1)):
        report.errors.append("faces: mesh_score outside 0..1")
    for name in ("yaw", "pitch", "roll"):
        angle = np.asarray(faces[name].to_numpy(zero_copy_only=False), dtype=np.float64)
        if np.nansum(np.abs(angle) > 180):
            report.errors.append(f"faces: {name} outside -180..180 degrees")
    missing_pose = int((has & np.isnan(np.asarray(faces["yaw"].to_numpy(zero_copy_only=False), dtype=np.float64))).sum())
    if missing_pose:
        report.warnings.append(f"faces: {missing_pose} face(s) with a mesh but no head pose (the pose fit failed)")


def _check_stage_tables(root: Path, video_ids: set[str], report: Report) -> None:
    """Tables later stages add (quality/...): schema, required values, video references."""

    for name in sorted(set(TABLES) - {"videos", "faces"}):
        if not (root / name).is_dir():
            continue
        table = _read_parts(root, name, report, ["video_id"] + [f.name for f in TABLES[name] if not f.nullable and f.name != "video_id"])
        if table is None:
            continue
        report.counts[name] = table.num_rows
        _non_null(table, name, report)
        unknown = {v for v in table["video_id"].to_pylist() if v not in video_ids}
        if unknown:
            report.errors.append(f"{name}: rows reference {len(unknown)} video_id(s) missing from videos/")


def _check_images(f: dict, report: Report) -> None:
    from dfpipe.manifests.codec import decode_image, decode_mask

    bad_img = bad_mask = wrong_size = 0
    for img, mask, size in zip(f["image"], f["mask"], f["size"]):
        try:
            arr = decode_image(img)
            if size and arr.shape[:2] != (size, size):
                wrong_size += 1
        except Exception:
            bad_img += 1
        if mask is not None:
            try:
                decode_mask(mask)
            except Exception:
                bad_mask += 1
    for n, what in ((bad_img, "image bytes that do not decode"), (bad_mask, "mask bytes that do not decode"),
                    (wrong_size, "images whose size differs from the size column")):
        if n:
            report.errors.append(f"faces: {n} row(s) with {what}")
