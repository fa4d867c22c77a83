"""Still images as inputs: one frame each, `kind=image`, in folders, in ingest layouts, and
(a folder with neither is refused in test_extract.py). The faces are public-domain
pictures shipped in packages (skimage's astronaut, matplotlib's Grace Hopper)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest


def _astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # RGB, 512x512


def _grace_hopper() -> np.ndarray:
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        data = np.frombuffer(fh.read(), np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]


def _save(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


def test_exif_orientation_is_applied_and_a_bad_image_is_a_classified_error(tmp_path):
    from PIL import Image

    from dfpipe.pipeline.video.decode import DecodeError, iter_frames, probe

    upright = _astronaut()[:, 64:448]  # 512 high, 384 wide
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1)))  # stored lying on its side
    exif = stored.getexif()
    exif[0x0112] = 6  # EXIF: turn 90 degrees clockwise to show
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    info = probe(tmp_path / "phone.jpg")
    assert (info.kind, info.width, info.height, info.n_frames, info.fps) == ("image", 384, 512, 1, 0.0)
    (frame,) = list(iter_frames(tmp_path / "phone.jpg"))
    assert frame.index == 0 and frame.image.shape == upright.shape
    assert np.abs(frame.image.astype(int) - upright).mean() < 4  # JPEG noise only: upright, RGB order

    (tmp_path / "notes.jpg").write_text("not a picture")
    with pytest.raises(DecodeError) as exc:
        probe(tmp_path / "notes.jpg")
    assert exc.value.code == "not_video" and "not an image" in exc.value.message


def test_a_folder_of_images_extracts_one_frame_each_and_says_labels_are_unknown(tmp_path, retinaface_weights):
    from dfpipe.pipeline.faces import ExtractConfig, extract

    photos = tmp_path / "photos"
    _save(photos / "astronaut.png", _astronaut())
    _save(photos / "more" / "grace_hopper.jpg", _grace_hopper())
    (photos / "broken.jpg").write_text("not a picture")
    (photos / "README.txt").write_text("ignored: not a video or image")
    summary = extract([photos], tmp_path / "DS", ExtractConfig(size=128), workers=0, progress=False)
    assert summary.n_items == 3 and summary.n_ok == 2 and summary.errors == {"not_video": 1}
    rows = {Path(r["path"]).name: r for r in pq.read_table(tmp_path / "DS" / "videos").to_pylist()}
    assert set(rows) == {"astronaut.png", "grace_hopper.jpg", "broken.jpg"}
    for name in ("astronaut.png", "grace_hopper.jpg"):
        row = rows[name]
        assert (row["kind"], row["n_frames"], row["n_sampled"], row["fps"]) == ("image", 1, 1, 0.0), row
        assert row["n_faces"] == 1 and row["label"] == "unknown"
    assert rows["broken.jpg"]["kind"] == "image" and rows["broken.jpg"]["status"] == "error"
    faces = pq.read_table(tmp_path / "DS" / "faces", columns=["video_id", "frame_index", "score"]).to_pylist()
    assert len(faces) == 2 and {f["frame_index"] for f in faces} == {0} and min(f["score"] for f in faces) > 0.9
    (note,) = [n for n in summary.notes if "no label" in n]
    assert note.startswith("3 input(s) have no label") and "dfpipe ingest folders ROOT" in note
    from dfpipe.manifests.info import info

    assert info(tmp_path / "DS").by_kind == {"image": 3}  # `dfpipe info`'s "by kind" row


def test_ingest_folders_of_images_gives_labels_and_methods(tmp_path, retinaface_weights):
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.pipeline.ingest import ingest

    root = tmp_path / "photos"
    _save(root / "real" / "astronaut.png", _astronaut())
    _save(root / "fake" / "flipped" / "astronaut.png", _astronaut()[:, ::-1])  # a stand-in "method" for labels
    ingest("folders", root, tmp_path / "DS")
    summary = extract([tmp_path / "DS"], None, ExtractConfig(size=128), workers=0, progress=False)
    assert summary.n_ok == 2 and not [n for n in summary.notes if "no label" in n]
    rows = {r["label"]: r for r in pq.read_table(tmp_path / "DS" / "videos").to_pylist()}
    assert rows["real"]["kind"] == rows["fake"]["kind"] == "image"
    assert rows["fake"]["method"] == "flipped" and rows["fake"]["source_video_id"] == rows["real"]["video_id"]
    assert rows["real"]["n_faces"] == rows["fake"]["n_faces"] == 1
