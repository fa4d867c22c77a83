"""End to end on the shared FF++ pair: ingest (listing) -> extract -> masks -> score-quality,
through the CLI, with resume, a shipped mask video, full frames and the report; then the
score-quality stage's error policy and reruns, through the library."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dfpipe.cli.main import app
from dfpipe.manifests.codec import decode_mask
from dfpipe.manifests.parts import part_path, read_table, write_rows
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.pipeline.faces.align import transform_points

pytestmark = pytest.mark.slow
runner = CliRunner()


def _run(*args: str) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, real_video, fake_video, retinaface_weights) -> Path:
    root = tmp_path_factory.mktemp("pair")
    listing = root / "list.json"
    listing.write_text(json.dumps([
        {"path": str(real_video), "label": "real", "dataset": "ff++", "compression": "c23"},
        {"path": str(fake_video), "label": "fake", "source": str(real_video), "method": "NeuralTextures",
         "dataset": "ff++", "compression": "c23"},
    ]))
    ds = root / "ds"
    _run("ingest", "list", listing, "--out", ds)
    _run("extract", ds, "--count", "3", "--size", "256", "--workers", "0")
    return ds


@pytest.fixture(scope="module")
def masked(dataset) -> Path:
    out = _run("masks", dataset, "--workers", "0")
    assert "pair: 3" in out
    return dataset


def _faces(ds: Path, label: str) -> pd.DataFrame:
    videos = read_table(ds, "videos", VIDEOS_SCHEMA).to_pandas()
    vid = videos.loc[videos.label == label, "video_id"].iloc[0]
    return pq.read_table(part_path(ds, "faces", vid), schema=FACES_SCHEMA).to_pandas()


def test_masks_from_the_pair_and_resume(masked):
    fake = _faces(masked, "fake")
    assert (fake.mask_source == "pair").all()
    for row in fake.itertuples():
        mask = decode_mask(row.mask)
        pts = transform_points(np.asarray(row.landmarks).reshape(5, 2), np.asarray(row.matrix).reshape(2, 3))
        ys, _ = np.nonzero(mask)
        assert len(ys) > 0 and ys.mean() > pts[2, 1]  # below the nose: NeuralTextures edits the mouth
    assert _faces(masked, "real")["mask"].isna().all()  # reals are left alone
    before = part_path(masked, "faces", fake.video_id.iloc[0]).stat().st_mtime_ns
    out = _run("masks", masked, "--workers", "0")
    assert "1 already had masks" in out
    assert part_path(masked, "faces", fake.video_id.iloc[0]).stat().st_mtime_ns == before
    result = runner.invoke(app, ["masks", str(masked), "--workers", "0", "--threshold", "30"])
    assert result.exit_code == 2 and "other parameters" in result.output


def test_shipped_mask_video_wins(masked, tmp_path, fake_video):
    import imageio_ffmpeg

    ds = tmp_path / "ds"
    shutil.copytree(masked, ds)
    # a "mask video" in frame pixels: the bright parts of the fake video, binarised by ffmpeg
    mask_video = tmp_path / "mask.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(fake_video), "-vf",
         "format=gray,lut=y='if(gt(val,150),255,0)'", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "0", "-pix_fmt", "yuv420p", str(mask_video)],
        check=True,
    )
    videos = read_table(ds, "videos", VIDEOS_SCHEMA).to_pylist()
    fake_row = next(v for v in videos if v["label"] == "fake")
    fake_row["meta"] = json.dumps({**json.loads(fake_row["meta"] or "{}"), "mask_path": "../mask.mp4"})
    write_rows(ds, "videos", fake_row["video_id"], [fake_row], VIDEOS_SCHEMA)
    faces = pq.read_table(part_path(ds, "faces", fake_row["video_id"])).to_pylist()
    for r in faces:
        r["mask"] = r["mask_source"] = None
    write_rows(ds, "faces", fake_row["video_id"], faces, FACES_SCHEMA)
    (ds / "run.json").unlink()  # a fresh masks run
    shutil.rmtree(ds / "masks")  # (its completion markers too)

    out = _run("masks", ds, "--workers", "0")
    assert "shipped: 3" in out
    from dfpipe.pipeline.masks.pairmask import shipped_mask
    from dfpipe.pipeline.video.decode import iter_frames

    got = _faces(ds, "fake").set_index("frame_index")
    frames = {f.index: f.image for f in iter_frames(mask_video) if f.index in got.index}
    for index, row in got.iterrows():
        want = shipped_mask(frames[index], row["matrix"], int(row["size"]))
        assert np.array_equal(decode_mask(row["mask"]), want)


def test_score_quality_cli_report_and_resume(masked, tmp_path):
    import torch

    from dfpipe.pipeline.quality.perceptual import VGGFeatures

    torch.manual_seed(0)
    weights = tmp_path / "vgg16-random.pth"  # a fixed random backbone: tests never use ImageNet files
    torch.save(VGGFeatures().state_dict(), weights)
    report = masked / "quality.html"
    out = _run("score-quality", masked, "--weights", weights, "--report", report, "--workers", "0")
    assert "dataset quality" in out and "scored 2" in out

    frames = pd.read_parquet(masked / "quality" / "frames")
    videos = pd.read_parquet(masked / "quality" / "videos")
    assert set(videos.status) == {"ok"} and len(videos) == 2
    fake = frames[frames.label == "fake"]
    real = frames[frames.label == "real"]
    assert len(fake) == 3 and len(real) == 3
    assert ((fake.mask_ssim > 0.5) & (fake.mask_ssim < 1)).all()
    assert ((fake.mask_ssim_inside > 0) & (fake.mask_ssim_inside < 1)).all()
    assert (fake.lpips > 0).all() and (fake.vgg_mse > 0).all()
    assert real[["mask_ssim", "lpips"]].isna().all().all()  # nothing to compare a real with
    # Ewarp exists for frames with a successor (the last sampled frame is the video's last)
    assert fake.ewarp.notna().sum() >= 2 and (fake.ewarp.dropna() > 0).all()
    fv = videos[videos.label == "fake"].iloc[0]
    assert fv.flow_on == "source" and fv.n_frames == 3
    assert fv.mask_ssim == pytest.approx(fake.mask_ssim.mean())
    html = report.read_text()
    assert "<table" in html and "NeuralTextures" in html
    pngs = list((masked / "quality_plots").glob("*.png"))
    assert any(p.name == "hist_mask_ssim.png" for p in pngs) and any(p.name.startswith("box_ewarp") for p in pngs)
    from dfpipe.manifests.validate import validate

    checked = validate(masked)
    assert checked.ok and checked.counts["quality/frames"] == len(frames), checked.errors

    out = _run("score-quality", masked, "--weights", weights, "--workers", "0")
    assert "already scored 2" in out
    result = runner.invoke(app, ["score-quality", str(masked), "--metrics", "ewarp", "--workers", "0"])
    assert result.exit_code == 2 and "--redo" in result.output
    result = runner.invoke(app, ["score-quality", str(masked), "--metrics", "psnr"])
    assert result.exit_code == 2 and "subset of mask_ssim, lpips, ewarp" in result.output


def test_score_quality_full_frame_and_missing_weights(masked, tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    shutil.copytree(masked, ds, ignore=shutil.ignore_patterns("quality*"))
    # metric names as people write them: with a hyphen (mask-ssim) as well as an underscore
    out = _run("score-quality", ds, "--full-frame", "--metrics", "mask-ssim", "--workers", "0", "--report", ds / "q.md")
    frames = pd.read_parquet(ds / "quality" / "frames")
    fake = frames[frames.label == "fake"]
    assert (fake.region == "frame").all() and fake.face_id.isna().all()
    # the crop mask pasted back covers a small part of a 1280x720 frame
    assert ((fake.mask_area > 0) & (fake.mask_area < 0.05)).all()
    assert ((fake.mask_ssim > 0.9) & (fake.mask_ssim < 1)).all()
    assert "Mask-SSIM" in (ds / "q.md").read_text() and "scored 2" in out

    monkeypatch.setenv("DFPIPE_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("DFPIPE_HOME", str(tmp_path / "home"))
    # offline without VGG-16 the default list scores what it can and says what it skipped
    result = runner.invoke(app, ["score-quality", str(ds), "--redo", "--workers", "0", "--metrics", "mask_ssim,lpips"])
    assert result.exit_code == 2  # named: required
    assert "vgg16-397923af.pth" in result.output
    result = runner.invoke(app, ["score-quality", str(ds), "--redo", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "lpips skipped" in " ".join(result.output.split()) and "vgg16-397923af.pth" in result.output
    scored = pd.read_parquet(ds / "quality" / "frames")
    assert scored["mask_ssim"].notna().any() and ("lpips" not in scored or scored["lpips"].isna().all())


# ----------------------------------------------------------------------------- the stage

QUICK = dict(metrics=("mask_ssim", "ewarp"))  # no LPIPS: no ImageNet backbone needed


def _unscored(masked: Path, tmp_path: Path) -> Path:
    ds = tmp_path / "ds"
    shutil.copytree(masked, ds, ignore=shutil.ignore_patterns("quality*"))
    return ds


def _quality_videos(ds: Path) -> pd.DataFrame:
    return pd.read_parquet(ds / "quality" / "videos").set_index("label")


def test_an_unexpected_error_in_one_video_is_an_internal_row_and_the_others_are_scored(masked, tmp_path, monkeypatch):
    from dfpipe.pipeline.quality import QualityConfig, score_quality, stage

    ds = _unscored(masked, tmp_path)
    score_video = stage.score_video

    def breaks_on_the_fake(root, video, source, config, gallery=None):
        if video["label"] == "fake":
            raise RuntimeError("boom")
        return score_video(root, video, source, config, gallery)

    monkeypatch.setattr(stage, "score_video", breaks_on_the_fake)
    summary = score_quality(ds, QualityConfig(**QUICK), workers=0, progress=False)
    videos = _quality_videos(ds)
    fake = videos.loc["fake"]
    assert (fake.status, fake.error_code, fake.error) == ("error", "internal", "RuntimeError: boom")
    assert fake.metrics == "mask_ssim,ewarp" and fake.flow_on == "source"
    assert videos.loc["real"].status == "ok" and videos.loc["real"].n_frames == 3
    assert set(pd.read_parquet(ds / "quality" / "frames").label) == {"real"}
    assert summary.n_items == 2 and summary.n_ok == 1 and summary.errors == {"internal": 1}
    assert summary.failed == [(fake.video_id, "internal", "RuntimeError: boom")]
    assert summary.counts["frames scored"] == 3


def test_a_video_that_cannot_be_decoded_keeps_its_error_code(masked, tmp_path):
    from dfpipe.pipeline.quality import QualityConfig, score_quality
    from dfpipe.pipeline.quality.report import write_report

    ds = _unscored(masked, tmp_path)
    videos = read_table(ds, "videos", VIDEOS_SCHEMA).to_pylist()
    real = next(v for v in videos if v["label"] == "real")
    write_rows(ds, "videos", real["video_id"], [{**real, "path": "gone.mp4"}], VIDEOS_SCHEMA)
    summary = score_quality(ds, QualityConfig(**QUICK), workers=0, progress=False)
    # the fake is compared with its source on frames of both videos: it fails alike
    assert summary.n_ok == 0 and summary.errors == {"unreadable": 2}
    assert set(_quality_videos(ds).error) == {f"{ds.absolute() / 'gone.mp4'}: no such file"}
    assert "could not be scored" in write_report(ds, tmp_path / "q.md").read_text()  # no plots, no crash


def test_a_rerun_skips_scored_videos_and_other_parameters_need_redo(masked, tmp_path, monkeypatch):
    from dfpipe.pipeline.quality import QualityConfig, score_quality, stage
    from dfpipe.runtime.runinfo import ParamsMismatch, read_run

    ds = _unscored(masked, tmp_path)
    first = score_quality(ds, QualityConfig(**QUICK), workers=0, progress=False)
    assert (first.n_items, first.n_skipped, first.n_ok, first.counts["frames scored"]) == (2, 0, 2, 6)
    markers = {p: p.stat().st_mtime_ns for p in (ds / "quality" / "videos").glob("*.parquet")}

    def must_not_run(*args):
        raise AssertionError("a scored video was scored again")

    with monkeypatch.context() as patched:
        patched.setattr(stage, "score_video", must_not_run)
        again = score_quality(ds, QualityConfig(**QUICK), workers=0, progress=False)
    assert (again.n_items, again.n_skipped, again.n_ok, again.n_errors) == (2, 2, 2, 0)
    assert {p: p.stat().st_mtime_ns for p in markers} == markers

    other = QualityConfig(metrics=("ewarp",))
    with pytest.raises(ParamsMismatch, match="--redo"):
        score_quality(ds, other, workers=0, progress=False)
    assert set(_quality_videos(ds).metrics) == {"mask_ssim,ewarp"}  # refused before any work
    redone = score_quality(ds, other, workers=0, progress=False, redo=True)
    assert (redone.n_skipped, redone.n_ok) == (0, 2)
    videos = _quality_videos(ds)
    assert set(videos.metrics) == {"ewarp"} and videos.mask_ssim.isna().all() and videos.ewarp.notna().all()
    assert read_run(ds)["stages"]["score-quality"]["params"]["metrics"] == ["ewarp"]
