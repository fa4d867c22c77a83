"""`dfpipe perturb` on real faces: crop copies with their lineage, video copies re-encoded
at the documented quality, resume, refusals, and `evaluate --by perturbation`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
from test_train_helpers import extract_pair, write_clip_dataset
from typer.testing import CliRunner

from dfpipe.cli.main import app
from dfpipe.manifests.codec import decode_image
from dfpipe.manifests.parts import read_table
from dfpipe.pipeline.perturb import ops
from dfpipe.pipeline.perturb.stage import FRAME_CRF, PerturbConfig, perturb
from dfpipe.runtime.runinfo import ParamsMismatch


@pytest.fixture(scope="module")
def clip_ds(real_video, fake_video, tmp_path_factory):
    """The FF++ c23 clip and its NeuralTextures fake cut into 40-frame clips (real and fake
    videos, every 10th frame, 64-pixel crops)."""
    real, fake = extract_pair(real_video, fake_video, every=10, size=64, work=tmp_path_factory.mktemp("extract"))
    return write_clip_dataset(tmp_path_factory.mktemp("clips"), real, fake, clip_frames=40)


def faces_of(ds) -> pd.DataFrame:
    return read_table(ds, "faces", columns=["face_id", "video_id", "image", "split", "label"]).to_pandas()


def videos_of(ds) -> pd.DataFrame:
    v = read_table(ds, "videos").to_pandas()
    v["meta_"] = v["meta"].map(json.loads)
    return v


def test_crop_copies_are_the_documented_perturbations_with_lineage(clip_ds, tmp_path):
    out = tmp_path / "ds2"
    summary = perturb(clip_ds, out, PerturbConfig(spec="GB:3,CS:5,BW:2+JPEG:4", mixed=1), workers=0, progress=False)
    originals = videos_of(clip_ds)
    n = len(originals)
    assert summary.n_items == summary.n_ok == 4 * n and summary.n_errors == 0
    copies = videos_of(out)
    assert len(copies) == 5 * n  # 4 perturbations + the clean original of each video
    by_name = copies.set_index("video_id")
    for v in originals.itertuples():
        for name in ("GB-3", "CS-5", "BW-2+JPEG-4"):
            row = by_name.loc[f"{v.video_id}-{name}"]
            assert row.meta_["perturbation"] == name and row.meta_["perturbed_from"] == v.video_id
            assert (row.label, row.method, row.split) == (v.label, v.method, v.split)
        assert by_name.loc[v.video_id].meta_["perturbation"] == "none"
        mixes = [m for m in copies.meta_ if m["perturbed_from"] == v.video_id and len(m["perturbation_kinds"]) == 3]
        assert len(mixes) == 1  # --mixed 1: one random mix of 3 distinct kinds
        assert len({k for k, _ in mixes[0]["perturbation_kinds"]}) == 3

    faces, clean = faces_of(out), faces_of(clip_ds).set_index("face_id")
    assert faces.face_id.is_unique and len(faces) == 5 * len(clean)
    for face in faces[faces.video_id.str.endswith("-GB-3")].itertuples():
        original = decode_image(clean.loc[face.face_id.replace("-GB-3", "", 1)].image)
        blurred = decode_image(face.image)
        assert np.array_equal(blurred, cv2.GaussianBlur(original, (13, 13), 13 / 6))  # GB level 3: 13 x 13 kernel
    for face in faces[faces.video_id.str.endswith("-CS-5")].itertuples():
        ycrcb = cv2.cvtColor(decode_image(face.image), cv2.COLOR_RGB2YCrCb).astype(int)
        assert np.abs(ycrcb[..., 1:] - 128).max() <= 2  # saturation x 0.0: grey
    bw = faces[faces.video_id.str.endswith("-BW-2+JPEG-4")]
    original = decode_image(clean.loc[bw.face_id.iloc[0].replace("-BW-2+JPEG-4", "", 1)].image)
    assert np.abs(decode_image(bw.image.iloc[0]).astype(int) - original).mean() > 2  # changed, visibly

    again = perturb(clip_ds, out, PerturbConfig(spec="GB:3,CS:5,BW:2+JPEG:4", mixed=1), workers=0, progress=False)
    assert again.n_skipped == again.n_items and faces_of(out).image.tolist() == faces.image.tolist()
    with pytest.raises(ParamsMismatch):
        perturb(clip_ds, out, PerturbConfig(spec="GB:4"), workers=0, progress=False)


def test_bad_arguments_are_exit_2_before_work(clip_ds, tmp_path):
    runner = CliRunner()
    for args, says in ((["--kinds", "XX:3"], "unknown"), (["--kinds", "GB:9"], "level"),
                       (["--kinds", "VC:2"], "--mode videos"), (["--mode", "frames"], "--mode")):
        result = runner.invoke(app, ["perturb", str(clip_ds), "--out", str(tmp_path / "x"), *args])
        assert result.exit_code == 2 and says in result.output, result.output
        assert not (tmp_path / "x").exists()


def test_video_copies_are_re_encoded_at_the_documented_quality(public_video, tmp_path):
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.pipeline.video.decode import iter_frames
    from dfpipe.pipeline.video.writing import run_ffmpeg

    root = tmp_path / "folder" / "real"
    root.mkdir(parents=True)
    run_ffmpeg(["-i", public_video, "-frames:v", "20", "-c:v", "libx264", "-crf", "18", root / "a.mp4"])
    ds = tmp_path / "ds"
    result = CliRunner().invoke(app, ["ingest", "folders", str(tmp_path / "folder"), "--out", str(ds)])
    assert result.exit_code == 0, result.output
    assert extract([ds], None, ExtractConfig(every=5, size=128), workers=0, progress=False).n_ok == 1
    out = tmp_path / "ds2"
    result = CliRunner().invoke(app, ["perturb", str(ds), "--out", str(out), "--mode", "videos", "--kinds", "VC:3,GB:2",
                                      "--workers", "0", "--no-progress"])
    assert result.exit_code == 0 and "dfpipe extract" in result.output, result.output
    rows = videos_of(out).set_index("video_id")
    vid = read_table(ds, "videos").column("video_id")[0].as_py()
    vc, gb = out / rows.loc[f"{vid}-VC-3"].path, out / rows.loc[f"{vid}-GB-2"].path
    assert (rows.status == "pending").all()
    assert b"crf=35.0" in vc.read_bytes()  # x264 writes its settings into the stream: VC level 3 = CRF 35
    assert f"crf={FRAME_CRF}.0".encode() in gb.read_bytes()
    src = [f.image for f in iter_frames(root / "a.mp4")]
    blurred = [f.image for f in iter_frames(gb)]
    assert len(blurred) == len(src) == 20

    def psnr(a, b):
        return 10 * np.log10(255 ** 2 / np.mean((a.astype(float) - b) ** 2))

    expected = [ops.gaussian_blur(im, 9) for im in src]  # GB level 2: 9 x 9 kernel
    assert np.mean([psnr(b, e) for b, e in zip(blurred, expected)]) > 38  # the blur, through a near-lossless encode
    assert np.mean([psnr(b, s) for b, s in zip(blurred, src)]) < np.mean([psnr(b, e) for b, e in zip(blurred, expected)]) - 5
    assert extract([out], None, ExtractConfig(every=5, size=128), workers=0, progress=False).n_ok == 3


@pytest.mark.slow
def test_evaluate_by_perturbation_gives_the_robustness_table(clip_ds, tmp_path):
    from dfpipe.train.data import load_index
    from dfpipe.train.evaluate import evaluate
    from dfpipe.train.trainer import train

    train(clip_ds, model="m2tr", tiny=True, out=tmp_path / "run", epochs=1, batch=8, workers=0, progress=False)
    ckpt = tmp_path / "run" / "best.pt"
    out = tmp_path / "ds2"
    assert perturb(clip_ds, out, PerturbConfig(spec="GB,JPEG:5"), workers=0, progress=False).n_errors == 0
    # the copies keep the split training resolved for their original
    split_of = load_index(clip_ds).table.groupby("video_id")["split"].first()
    copies = videos_of(out)
    assert all(split_of[m["perturbed_from"]] == s for m, s in zip(copies.meta_, copies.split))

    res = evaluate(ckpt, out, split="test", by=("perturbation",), workers=0, progress=False)
    clean = evaluate(ckpt, clip_ds, split="test", workers=0, progress=False)
    per = res["per_perturbation"]
    assert set(per) == {"none", "GB-1", "GB-2", "GB-3", "GB-4", "GB-5", "JPEG-5"}
    assert per["none"]["auc"] == pytest.approx(clean["frame"]["auc"]) and per["none"]["n"] == clean["frame"]["n"]
    assert {m["n"] for m in per.values()} == {clean["frame"]["n"]}
    assert list(res["robustness"]["GB"]) == ["1", "2", "3", "4", "5"] and list(res["robustness"]["JPEG"]) == ["5"]

    cli = subprocess.run([sys.executable, "-m", "dfpipe", "evaluate", str(ckpt), str(out), "--by", "perturbation",
                          "--workers", "0", "--no-progress"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "100"})
    assert cli.returncode == 0, cli.stderr
    assert "AUC by perturbation and level" in cli.stdout and "JPEG" in cli.stdout
    result = CliRunner().invoke(app, ["evaluate", str(ckpt), str(clip_ds), "--by", "perturbation", "--workers", "0"])
    assert result.exit_code == 2 and "dfpipe perturb" in result.output
