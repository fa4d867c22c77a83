"""`dfpipe build` end to end: a benchmark from a recipe over real faces, killed and resumed.

The reals are short camera-zoom clips made with ffmpeg from the shared photos (five people,
one of them twice) and from the public-domain faces; the external test set is the shared
FF++ c23 real video and its NeuralTextures fake. The recipe self-blends and swaps at two
qualities, scores, trains both tiny detectors, evaluates within the set and across.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dfpipe.build.card import counts_tables, detector_tables
from dfpipe.build.plan import Layout
from dfpipe.build.recipe import load_recipe
from dfpipe.build.run import build, read_state
from dfpipe.build.splits import identity_leaks

pytestmark = pytest.mark.slow

PHOTOS = ("fr_biden2.jpg", "fr_john1.jpeg", "fr_rose_leslie1.jpg", "fr_rose_leslie2.jpg", "fr_obama_small.jpg")
FRAMES = 20

RECIPE = """\
name: e2e
sources:
  - {{reals: clips, name: people}}
extract: {{count: 5, keep: largest, size: 224}}
synthesis:
  - {{method: self-blend, qualities: [c23, c40]}}
  - {{method: swap, count: 2, qualities: [c23, c40]}}
  - {{method: reencode, qualities: [c23, c40]}}
quality:
  metrics: [mask_ssim, identity, pose, seam]
detectors:
  - {{model: m2tr_tiny, epochs: 1, batch: 8, workers: 0}}
  - {{model: mat_tiny, epochs: 1, batch: 8, workers: 0}}
evaluate:
  splits: [val, test]
  external:
    - {{list: ffpp.csv, name: ffpp}}
card:
  title: {title}
"""


def photo_clip(photo: Path, out: Path, frames: int = FRAMES) -> Path:
    """A slow zoom into a photo, 640 pixels wide, as H.264."""
    import cv2

    from dfpipe.pipeline.video.writing import ffmpeg_exe

    h, w = cv2.imread(str(photo)).shape[:2]
    height = int(round(640 * h / w / 2)) * 2
    zoom = (f"scale=640:{height},zoompan=z='1+0.004*on':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)'"
            f":d={frames}:s=640x{height}:fps=25")
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-loop", "1", "-i", str(photo), "-vf", zoom,
                    "-frames:v", str(frames), "-c:v", "libx264", "-crf", "20", "-pix_fmt", "yuv420p", str(out)],
                   check=True)
    return out


def write_project(root: Path, faces_dir: Path, real_video: Path, fake_video: Path, title: str = "e2e card") -> Path:
    from dfpipe.media.faceclips import render_clip

    clips = root / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        photo_clip(faces_dir / name, clips / f"{Path(name).stem}.mp4")
    for face in ("astronaut", "grace_hopper"):
        render_clip(clips / f"{face}.mp4", n_frames=FRAMES, width=640, height=480, faces=(face,))
    (root / "ffpp.csv").write_text(f"path,label,method,source\n{real_video},real,,\n"
                                   f"{fake_video},fake,NeuralTextures,{real_video}\n")
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE.format(title=title))
    return recipe


def card_tables(out: Path, recipe_path: Path) -> dict[str, list]:
    """What the card shows, minus the times: counts and detector tables as plain rows."""
    recipe = load_recipe(recipe_path)
    lay = Layout(out)
    tables = {k: v.to_dict("records") for k, v in counts_tables(lay.dataset).items()}
    overall, detail, cross, _ = detector_tables(lay, recipe, out / "tmp-roc")
    shutil.rmtree(out / "tmp-roc", ignore_errors=True)
    tables.update(overall=overall.to_dict("records"), detail=detail.to_dict("records"), cross=cross.to_dict("records"))
    return json.loads(json.dumps(tables, default=str))


@pytest.fixture(scope="module")
def project(tmp_path_factory, faces_dir, real_video, fake_video):
    return write_project(tmp_path_factory.mktemp("project"), faces_dir, real_video, fake_video)


@pytest.fixture(scope="module")
def clean_build(project, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean") / "bench"
    report = build(project, out, workers=0, progress=False)
    return out, report


def test_a_clean_build_writes_every_step_and_the_card(clean_build):
    out, report = clean_build
    assert [s.status for s in report.steps] == ["built"] * len(report.steps)
    state = read_state(out)
    assert state["recipe"]["name"] == "e2e" and state["versions"]["torch"]
    assert {"mobilenet0.25_Final.pth", "face_landmark.tflite"} <= set(state["weights"])
    assert all(len(v) == 64 for v in state["weights"].values())  # sha256 of each weights file
    assert (out / "recipe.yaml").read_text().startswith("name: e2e")
    counts = counts_tables(out / "benchmark")  # what the detectors saw: the reals at the fakes' qualities
    methods = {(r["method"], r["compression"]): r["videos"] for r in counts["by method and compression"].to_dict("records")}
    assert ("real", "-") not in methods and methods[("real", "c23")] == methods[("real", "c40")] == 7
    assert methods[("self-blend", "c23")] == methods[("self-blend", "c40")] == 7
    assert methods[("swap", "c23")] == methods[("swap", "c40")] == 2
    splits = state["steps"]["splits"]["figures"]
    assert splits["described"] and set(splits["videos"]) == {"train", "val", "test"}
    # five people in clips, Rose Leslie twice: six identities over seven real videos
    assert sum(splits["identities"].values()) == 6
    assert identity_leaks(out / "dataset") == [] and identity_leaks(out / "benchmark") == []
    identities = counts["identities"].set_index("split")["identities"]
    assert identities.sum() == 6  # the re-encoded reals carry their person
    evals = state["steps"]["evaluate:m2tr_tiny"]["figures"]
    assert evals["external-ffpp"]["n_videos"] == 2 and evals["test"]["n_faces"] > 0


def test_no_identity_crosses_splits(clean_build):
    """Every person's videos, and each fake's source and target, share one split."""
    import pandas as pd

    from dfpipe.manifests.parts import read_table
    from dfpipe.manifests.schema import VIDEOS_SCHEMA

    out, _ = clean_build
    videos = read_table(out / "dataset", "videos", VIDEOS_SCHEMA).to_pandas()
    videos = videos[videos["status"] == "ok"]
    split_of = dict(zip(videos["video_id"], videos["split"]))
    reals = videos[videos["label"] == "real"]
    person = {v: json.loads(m)["identity"] for v, m in zip(reals["video_id"], reals["meta"])}
    assert len(set(person.values())) == 6
    for p in set(person.values()):
        assert len({split_of[v] for v, q in person.items() if q == p}) == 1, p
    rose = [v for v, p in zip(reals["video_id"], reals["path"]) if "rose_leslie" in p]
    assert len({person[v] for v in rose}) == 1  # one person, found by her face in two photos
    fakes = videos[videos["label"] == "fake"]
    swaps = fakes[fakes["method"] == "swap"]
    assert len(swaps) == 4 and (swaps["source_video_id"] != swaps["target_video_id"]).all()
    for row in fakes.itertuples():
        for other in (row.source_video_id, row.target_video_id):
            assert split_of[other] == row.split
    # train / evaluate see the same assignment: the evaluated faces of `test` are test videos
    faces = pd.read_parquet(out / "eval" / "m2tr_tiny" / "test" / "faces.parquet")
    assert set(faces["split"]) == {"test"} and set(faces["video_id"]) <= {v for v, s in split_of.items() if s == "test"}


def test_killed_part_way_and_rerun_gives_the_same_card(project, clean_build, tmp_path):
    """SIGKILL while the quality stage is scoring, then the same command again."""
    out = tmp_path / "bench"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "dfpipe", "build", str(project), "--out", str(out), "--workers", "0", "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    scored = out / "dataset" / "quality" / "videos"
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if scored.is_dir() and len(list(scored.glob("part-*.parquet"))) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the build ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state = read_state(out)
    assert state["steps"]["quality"]["status"] == "running" and state["steps"]["merge"]["status"] == "done"
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert {v["status"] for v in read_state(out)["steps"].values()} == {"done"}
    clean_out, _ = clean_build
    assert card_tables(out, project) == card_tables(clean_out, project)


def test_the_dry_run_of_a_built_benchmark_has_nothing_left(project, clean_build):
    out, _ = clean_build
    report = build(project, out, dry_run=True)
    assert {s.status for s in report.steps} == {"done"}


def test_a_changed_section_is_refused_then_rebuilt_alone(project, clean_build, tmp_path):
    """Only the card reads `card`: changing its title rebuilds the card and nothing else."""
    from typer.testing import CliRunner

    from dfpipe.build.run import BuildError
    from dfpipe.cli.main import app

    out, _ = clean_build
    changed = project.parent / "recipe-retitled.yaml"
    changed.write_text(project.read_text().replace("title: e2e card", "title: e2e card, retitled"))
    with pytest.raises(BuildError, match=r"card would be built again.*--rebuild-changed"):
        build(changed, out, progress=False)
    result = CliRunner().invoke(app, ["build", str(changed), "--out", str(out), "--no-progress"])
    assert result.exit_code == 2 and "--rebuild-changed" in result.output
    before = read_state(out)["steps"]
    report = build(changed, out, rebuild_changed=True, progress=False)
    assert {s.name for s in report.steps if s.status == "built"} == {"card"}
    after = read_state(out)["steps"]
    assert after["quality"] == before["quality"] and after["card"]["digest"] != before["card"]["digest"]
    assert "retitled" in (out / "card" / "index.html").read_text()
    build(project, out, rebuild_changed=True, progress=False)  # as it was, for the other tests


def test_the_card_opens_in_chromium_with_every_picture_and_table(clean_build, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt install chromium)")
    out, _ = clean_build
    card = out / "card" / "index.html"
    html = card.read_text()
    for heading in ("Counts", "Samples", "Quality", "Detectors", "Cross-dataset", "Feature spread", "Time per step",
                    "Recipe"):
        assert f">{heading}" in html, heading
    assert html.count("<table>") >= 8
    # a copy beside the card reports, once loaded, how many pictures failed to decode
    probe = card.with_name("probe.html")
    probe.write_text(html.replace("</body>", "<script>window.addEventListener('load', () => {const bad = "
                                  "[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length;"
                                  "document.body.setAttribute('data-broken', bad);"
                                  "document.body.setAttribute('data-images', document.images.length);});"
                                  "</script></body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    dom = subprocess.run([chromium, *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    probe.unlink()
    images = int(re.search(r'data-images="(\d+)"', dom).group(1))
    assert images >= 8 and re.search(r'data-broken="(\d+)"', dom).group(1) == "0"
    shot = tmp_path / "card.png"
    subprocess.run([chromium, *flags, "--hide-scrollbars", "--window-size=1200,3000", f"--screenshot={shot}",
                    card.as_uri()], capture_output=True, timeout=120)
    import cv2

    picture = cv2.imread(str(shot))
    assert picture is not None and picture.shape[:2] == (3000, 1200)
    assert (picture < 200).any(axis=2).mean() > 0.02  # text, tables and faces, not a blank page


def test_the_hf_export_loads_with_datasets_and_its_card(clean_build, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from dfpipe.build.export import export

    out, _ = clean_build
    share = tmp_path / "hf"
    summary = export(out, "hf", share, faces_per_file=40)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    loaded = datasets.load_dataset(str(share), cache_dir=str(tmp_path / "hf-cache"))  # never an older cached copy
    assert set(loaded) == {"train", "validation", "test"}
    assert {s: loaded[s].num_rows for s in loaded} == {"validation" if s == "val" else s: n
                                                      for s, n in summary.faces.items()}
    features = loaded["train"].features
    assert isinstance(features["image"], datasets.Image) and features["label"].names == ["real", "fake"]
    sample = loaded["test"][0]
    assert sample["image"].size == (224, 224) and sample["split"] == "test" and sample["identity"]
    readme = (share / "README.md").read_text()
    assert readme.startswith("---\nconfigs:") and "# e2e card" in readme
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme):
        assert (share / link).is_file(), link


def test_the_trainer_reads_webdataset_shards_back(clean_build, tmp_path, monkeypatch):
    import tarfile

    from dfpipe.build.export import export
    from dfpipe.train.evaluate import evaluate
    from dfpipe.train.trainer import train

    out, _ = clean_build
    monkeypatch.setenv("DFPIPE_HOME", str(tmp_path / "home"))
    summary = export(out, "webdataset", tmp_path / "wds", faces_per_file=30)
    shards = sorted((tmp_path / "wds" / "shards").glob("*.tar"))
    assert len(shards) == len(summary.files) > 3
    with tarfile.open(shards[0]) as tar:
        names = tar.getnames()
    assert {n.split(".", 1)[1] for n in names} >= {"png", "cls", "json"}
    result = train(str(tmp_path / "wds" / "shards"), "m2tr_tiny", tmp_path / "run", epochs=1, batch=8, workers=0,
                   progress=False)
    assert result["epochs"] == 1 and any("WebDataset" in n for n in result["notes"])
    # the splits came with the shards: test faces are the benchmark's test faces
    metrics = evaluate(tmp_path / "run" / "last.pt", str(tmp_path / "wds" / "shards" / "test-*.tar"), "test",
                       workers=0, progress=False)
    assert metrics["n_faces"] == summary.faces["test"]
