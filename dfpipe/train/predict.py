"""`dfpipe predict`: fake probability of new videos, per video and per face track.

Faces are found exactly as the training data was made: extract's per-video function
(`process_video`) with the crop settings recorded in the checkpoint (from the training
dataset's run.json), then the model scores each crop. A video's probability is the mean
over its faces, a track's the mean over the track. Videos that cannot be read, or hold
no face, get a row with their status and error code instead of a probability.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dfpipe.models.registry import model_from_checkpoint
from dfpipe.runtime.checkpoint import load_checkpoint
from dfpipe.runtime.device import resolve_device
from dfpipe.train.data import DataError, ImageSpec
from dfpipe.train.fusion import fusion_scores, wants_vtf
from dfpipe.train.inference import score_images_features

#: frame step when neither `every` nor `count` is given
DEFAULT_EVERY = 10
#: extract settings that decide what a crop looks like (taken from the checkpoint)
_CROP_KEYS = ("size", "crop", "margin", "detector", "max_side", "score_threshold", "nms_threshold", "min_face", "smooth")


def extract_config(ckpt: dict[str, Any], every: int | None, count: int | None, keep: str, device: str):
    """ExtractConfig repeating the training crops; frame sampling and keep from the caller."""
    from dfpipe.pipeline.faces import ExtractConfig

    known = {f.name for f in fields(ExtractConfig)}
    recorded = {k: v for k, v in (ckpt.get("extract") or {}).items() if k in _CROP_KEYS and k in known}
    recorded.setdefault("size", ImageSpec.from_default_cfg(ckpt["default_cfg"]).height)
    if every is None and count is None:
        every = DEFAULT_EVERY
    return ExtractConfig(every=every, count=count, keep=keep, device=device, **recorded)


def _track_summary(track_ids: np.ndarray, frames: np.ndarray, probs: np.ndarray) -> list[dict[str, Any]]:
    out = []
    for t in np.unique(track_ids):
        sel = track_ids == t
        out.append({
            "track_id": int(t),
            "n_faces": int(sel.sum()),
            "prob": float(probs[sel].mean()),
            "first_frame": int(frames[sel].min()),
            "last_frame": int(frames[sel].max()),
        })
    return out


def predict(
    checkpoint: str | Path,
    videos: Sequence[str | Path],
    every: int | None = None,
    count: int | None = None,
    keep: str = "all",
    batch: int = 16,
    device: str | None = None,
    threshold: float = 0.5,
    faces: bool = False,
    output: str | Path | None = None,
    fusion: str = "auto",
) -> dict[str, Any]:
    """Score each video; `faces=True` also lists every face's probability. `output`
    writes the result as JSON.

    A video's `prob` is the VTF head's (the max over its tracks) when the checkpoint has
    one (`train --fusion vtf`) and `fusion` is auto or vtf, else the mean of its frame
    probabilities; `prob_mean` is always the mean, `fusion` says which `prob` is."""
    from dfpipe.manifests.codec import decode_image
    from dfpipe.pipeline.faces.video import process_video

    if not videos:
        raise DataError("no videos given")
    started = time.perf_counter()
    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    use_vtf = wants_vtf(ckpt, fusion, checkpoint)
    model = model_from_checkpoint(ckpt, dev)
    spec = ImageSpec.from_default_cfg(ckpt["default_cfg"])
    config = extract_config(ckpt, every, count, keep, "cuda" if dev.type == "cuda" else "cpu")
    results = []
    with tempfile.TemporaryDirectory(prefix="dfpipe-predict-") as root:
        for path in videos:
            video_row, face_rows = process_video(Path(path), config, root)
            entry: dict[str, Any] = {
                "path": str(path),
                "video_id": video_row["video_id"],
                "status": video_row["status"],
                "error_code": video_row.get("error_code"),
                "error": video_row.get("error"),
                "n_sampled": video_row.get("n_sampled"),
                "truncated": json.loads(video_row.get("meta") or "{}").get("truncated"),  # cut short: scored what it has
                "n_faces": len(face_rows),
                "prob": None,
                "label": None,
                "tracks": [],
            }
            if video_row["status"] == "ok" and not face_rows:
                entry.update(status="error", error_code="no_face", error="no face found in the sampled frames")
            if face_rows:
                probs, feats = score_images_features(model, (decode_image(r["image"]) for r in face_rows), spec, dev,
                                                     batch)
                tracks = np.array([r["track_id"] for r in face_rows])
                frames = np.array([r["frame_index"] for r in face_rows])
                entry["prob_mean"] = entry["prob"] = float(probs.mean())
                entry["fusion"] = "mean"
                if use_vtf:
                    table = pd.DataFrame({"video_id": entry["video_id"], "track_id": tracks, "frame_index": frames,
                                          "label": 0, "method": None, "compression": None, "prob": probs})
                    entry["prob"] = float(fusion_scores(ckpt, table, feats, device=str(dev))["prob_vtf"].iloc[0])
                    entry["fusion"] = "vtf"
                entry["label"] = "fake" if entry["prob"] >= threshold else "real"
                entry["tracks"] = _track_summary(tracks, frames, probs)
                if faces:
                    entry["faces"] = [
                        {"frame_index": int(f), "track_id": int(t), "prob": float(p),
                         "box": [r["x1"], r["y1"], r["x2"], r["y2"]]}
                        for r, f, t, p in zip(face_rows, frames, tracks, probs)
                    ]
            results.append(entry)
    summary = {
        "checkpoint": str(checkpoint),
        "model": ckpt["model_name"],
        "threshold": threshold,
        "videos": results,
        "n_videos": len(results),
        "n_errors": sum(r["status"] != "ok" for r in results),
        "seconds": round(time.perf_counter() - started, 3),
    }
    if output is not None:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
