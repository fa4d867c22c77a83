"""The newcomer's whole journey, as the README walks it, through the installed `dfpipe`
command: a folder of real and fake videos -> ingest folders -> extract -> masks ->
score-quality -> train -> evaluate -> predict -> show.

The folder is made from the shared FF++ c23 pair the way a curator's would look: the real
clip and its NeuralTextures fake, each cut into four 3-second segments (re-encoded, frame
exact), under real/ and fake/NeuralTextures/ with FF++'s names (`004_s0.mp4`,
`004_s0_982.mp4`), so every fake pairs with its real and the pairs make four source groups
for the splits. Every step must exit 0 with no traceback and leave what it says it made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dfpipe.manifests.parts import read_table
from dfpipe.pipeline.quality import read_quality
from dfpipe.pipeline.video.decode import probe
from dfpipe.pipeline.video.writing import run_ffmpeg

pytestmark = pytest.mark.slow
SEGMENTS, SEGMENT_FRAMES = 4, 75
DFPIPE = [sys.executable, "-m", "dfpipe"]


def _segment(video: Path, first: int, n: int, out: Path) -> Path:
    """Frames [first, first + n) of `video`, re-encoded (H.264 CRF 23, like FF++ c23)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(["-i", video, "-vf", f"select='between(n,{first},{first + n - 1})',setpts=N/FRAME_RATE/TB",
                "-c:v", "libx264", "-crf", "23", "-an", out])
    return out


@pytest.fixture(scope="module")
def curated_folder(tmp_path_factory, real_video, fake_video) -> Path:
    root = tmp_path_factory.mktemp("journey") / "videos"
    for i in range(SEGMENTS):
        _segment(real_video, i * SEGMENT_FRAMES, SEGMENT_FRAMES, root / "real" / f"004_s{i}.mp4")
        _segment(fake_video, i * SEGMENT_FRAMES, SEGMENT_FRAMES, root / "fake" / "NeuralTextures" / f"004_s{i}_982.mp4")
    return root


def dfpipe(*args: str | Path, cwd: Path) -> str:
    """Run the `dfpipe` command as a user would; its output, after checking it exited 0
    without a traceback."""
    proc = subprocess.run([*DFPIPE, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "COLUMNS": "80"})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"dfpipe {' '.join(map(str, args))} exited {proc.returncode}:\n{output[-4000:]}"
    assert "Traceback" not in output, output[-4000:]
    return output


def test_folder_to_detector_to_gallery(curated_folder, tmp_path):
    work = tmp_path
    root = curated_folder
    assert probe(root / "real" / "004_s1.mp4").n_frames == SEGMENT_FRAMES

    out = dfpipe("ingest", "folders", root, "--out", "ds", cwd=work)
    assert "fake: 4, real: 4" in out and "NeuralTextures: 4" in out
    videos = read_table(work / "ds", "videos").to_pandas()
    assert len(videos) == 2 * SEGMENTS and videos["source_video_id"].notna().sum() == SEGMENTS  # every fake paired

    dfpipe("extract", "ds", "--every", "5", "--size", "128", "--no-progress", cwd=work)
    videos = read_table(work / "ds", "videos").to_pandas()
    assert (videos["status"] == "ok").all() and (videos["n_faces"] >= SEGMENT_FRAMES // 5 - 1).all()

    out = dfpipe("masks", "ds", "--no-progress", cwd=work)
    masks = read_table(work / "ds", "masks").to_pandas()
    assert len(masks) == SEGMENTS and (masks["status"] == "ok").all(), out
    faces = read_table(work / "ds", "faces").to_pandas()
    fake_faces = faces[faces["video_id"].isin(videos.loc[videos["label"] == "fake", "video_id"])]
    assert fake_faces["mask"].notna().all()

    out = dfpipe("score-quality", "ds", "--report", "ds/report.html", "--no-progress", cwd=work)
    assert "lpips skipped" in out  # offline without VGG-16: said, and the rest scored
    assert f"scored {2 * SEGMENTS} of {2 * SEGMENTS} videos" in out
    fakes = read_quality(work / "ds")[1].query("label == 'fake'")
    assert fakes["mask_ssim"].between(0.5, 1).all() and fakes["id_to_target"].lt(0.6).all()  # same person, mouth changed
    assert "LPIPS" not in (work / "ds" / "report.html").read_text()

    out = dfpipe("train", "ds", "--model", "m2tr", "--tiny", "--no-pretrained", "--epochs", "1", "--out", "run",
                 "--workers", "0", "--no-progress", cwd=work)
    assert "splits (DS/splits/): train" in " ".join(out.split()) and (work / "run" / "best.pt").is_file()

    out = dfpipe("evaluate", "run/best.pt", "ds", "--report", "run/eval", "--workers", "0", "--no-progress", cwd=work)
    metrics = json.loads((work / "run" / "eval" / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n_faces"] > 0 and 0 <= metrics["frame"]["auc"] <= 1
    # evaluate scores the test split train wrote: a whole source group (a real and its fake), never seen in training
    splits = pd.read_parquet(work / "ds" / "splits").set_index("video_id")["split"]
    evaluated = set(pd.read_parquet(work / "run" / "eval" / "faces.parquet")["video_id"])
    assert evaluated == set(splits[splits == "test"].index)
    assert set(videos.loc[videos["video_id"].isin(evaluated), "label"]) == {"real", "fake"}

    out = dfpipe("predict", "run/best.pt", root / "real" / "004_s3.mp4", root / "fake" / "NeuralTextures" / "004_s3_982.mp4",
                 "--json", cwd=work)
    predictions = json.loads(out[out.index("{"):])
    assert [v["status"] for v in predictions["videos"]] == ["ok", "ok"]
    assert all(0 <= v["prob"] <= 1 and v["n_faces"] > 0 for v in predictions["videos"])

    out = dfpipe("show", "ds", cwd=work)
    sheet, gallery = work / "ds" / "show" / "contact_sheet.png", work / "ds" / "show" / "index.html"
    assert sheet.read_bytes()[:4] == b"\x89PNG"
    html = gallery.read_text()
    assert all(Path(p).name in html for p in videos["path"])  # every video in the gallery
    assert "NeuralTextures" in html and "with a mask" in out
