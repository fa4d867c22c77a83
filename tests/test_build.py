"""The build's plan, its refusals, the merge and the split-aware pairing (fast: no stage runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dfpipe.build.plan import GROUPS, Layout, parse_only, plan_steps
from dfpipe.build.recipe import load_recipe
from dfpipe.build.run import BuildError, build
from dfpipe.cli.main import app

BASE = """\
name: t
sources: [{reals: videos}]
synthesis:
  - {method: self-blend, qualities: [c23]}
  - {method: swap, count: 3}
quality: {metrics: [mask_ssim]}
detectors: [{model: m2tr_tiny, epochs: 1}]
card: {title: T}
"""


def _recipe(tmp_path: Path, text: str = BASE, name: str = "r.yaml"):
    (tmp_path / "videos").mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(text)
    return load_recipe(path)


def _digests(recipe, out) -> dict[str, str]:
    return {s.name: s.digest for s in plan_steps(recipe, out)}


def test_the_plan_orders_every_stage_and_splits_before_synthesis(tmp_path):
    steps = plan_steps(_recipe(tmp_path), tmp_path / "b")
    names = [s.name for s in steps]
    assert names == ["ingest:reals-videos", "extract", "splits", "synth:self-blend-alpha-none", "synth:swap-alpha-lct",
                     "merge", "masks", "quality", "train:m2tr_tiny", "evaluate:m2tr_tiny", "card"]
    assert [GROUPS.index(s.group) for s in steps] == sorted(GROUPS.index(s.group) for s in steps)
    assert steps[3].needs == ("splits",) and steps[3].outputs == (Layout(tmp_path / "b").fakes(steps[3].name[6:]),)


def test_a_changed_entry_changes_its_step_and_what_follows_only(tmp_path):
    before = _digests(_recipe(tmp_path), tmp_path / "b")
    swap = _digests(_recipe(tmp_path, BASE.replace("count: 3", "count: 4"), "swap.yaml"), tmp_path / "b")
    assert {k for k in before if before[k] != swap[k]} == {"synth:swap-alpha-lct", "merge", "masks", "quality",
                                                            "train:m2tr_tiny", "evaluate:m2tr_tiny", "card"}
    quality = _digests(_recipe(tmp_path, BASE.replace("[mask_ssim]", "[seam]"), "q.yaml"), tmp_path / "b")
    assert {k for k in before if before[k] != quality[k]} == {"quality", "train:m2tr_tiny", "evaluate:m2tr_tiny", "card"}
    card = _digests(_recipe(tmp_path, BASE.replace("title: T", "title: U"), "c.yaml"), tmp_path / "b")
    assert {k for k in before if before[k] != card[k]} == {"card"}
    comment = _digests(_recipe(tmp_path, "# a comment\n" + BASE, "comment.yaml"), tmp_path / "b")
    assert comment == before


def test_only_names_known_groups_and_needs_what_came_before(tmp_path):
    assert parse_only("synth, quality") == ("synth", "quality")
    with pytest.raises(ValueError, match="unknown step 'synthesis'; one of ingest, extract"):
        parse_only("synthesis")
    recipe = _recipe(tmp_path)
    with pytest.raises(BuildError, match="synth:self-blend-alpha-none needs splits, which is not built yet") as info:
        build(recipe, tmp_path / "b", only="synth")
    assert info.value.code == 2 and not (tmp_path / "b" / "fakes").exists()


def test_the_cli_refuses_a_bad_recipe_or_argument_before_any_work(tmp_path):
    _recipe(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("count: 3", "cuont: 3"))
    runner = CliRunner()
    result = runner.invoke(app, ["build", str(bad), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "synthesis[1].cuont: unknown key (did you mean count?)" in result.output
    result = runner.invoke(app, ["build", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "b"), "--only", "sinth"])
    assert result.exit_code == 2 and "unknown step 'sinth'" in result.output
    assert not (tmp_path / "b").exists()


def test_the_merge_takes_each_video_once_and_keeps_its_file_reachable(tmp_path):
    from dfpipe.manifests.merge import merge_datasets
    from dfpipe.manifests.parts import part_path, read_table, write_rows
    from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA

    reals, fakes, out = tmp_path / "reals", tmp_path / "fakes" / "plan", tmp_path / "dataset"
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"a")
    (fakes / "c23").mkdir(parents=True)
    (fakes / "c23" / "f.mp4").write_bytes(b"f")
    write_rows(reals, "videos", "a", [{"video_id": "a", "path": "../clips/a.mp4", "status": "ok", "label": "real"}],
               VIDEOS_SCHEMA)
    write_rows(reals, "faces", "a", [{"face_id": "a-0", "video_id": "a", "frame_index": 0, "track_id": 0}], FACES_SCHEMA)
    write_rows(fakes, "videos", "f", [{"video_id": "f", "path": "c23/f.mp4", "status": "ok", "label": "fake",
                                       "source_video_id": "a"}], VIDEOS_SCHEMA)
    write_rows(fakes, "videos", "a", [{"video_id": "a", "path": "../../clips/a.mp4", "status": "pending"}], VIDEOS_SCHEMA)
    first = merge_datasets([reals, fakes], out)
    assert (first.added, first.kept) == (2, 0)
    rows = {r["video_id"]: r for r in read_table(out, "videos", VIDEOS_SCHEMA).to_pylist()}
    assert rows["a"]["status"] == "ok" and (out / rows["a"]["path"]).read_bytes() == b"a"
    assert (out / rows["f"]["path"]).read_bytes() == b"f"
    assert part_path(out, "faces", "a").read_bytes() == part_path(reals, "faces", "a").read_bytes()
    again = merge_datasets([reals, fakes], out)
    assert (again.added, again.kept) == (0, 2)
    with pytest.raises(ValueError, match="cannot also be one of its inputs"):
        merge_datasets([reals, out], out)


def test_swaps_pair_people_of_one_split_only():
    from dfpipe.pipeline.synth.pairing import TrackRef, random_pairs

    sizes = {TrackRef(v, 0): 10 for v in "abcdef"}
    split_of = {"a": "train", "b": "train", "c": "train", "d": "val", "e": "val", "f": "test"}
    pairs = random_pairs(sizes, 20, seed=0, split_of=split_of)
    assert pairs and all(split_of[p.target.video_id] == split_of[p.source.video_id] for p in pairs)
    assert {p.target.video_id for p in pairs} == set("abcde")  # f is alone in test: nobody to swap with
    assert len(random_pairs(sizes, 40, seed=0)) > len(pairs)  # without splits, any two videos


def test_per_compression_compares_each_levels_fakes_with_raw_reals():
    from dfpipe.train.metrics import per_compression

    rng = np.random.default_rng(0)
    reals = pd.DataFrame({"label": 0, "prob": rng.uniform(0, 0.6, 40), "compression": None,
                          "video_id": [f"r{i % 4}" for i in range(40)]})
    c23 = pd.DataFrame({"label": 1, "prob": rng.uniform(0.5, 1, 20), "compression": "c23",
                        "video_id": [f"a{i % 2}" for i in range(20)]})
    c40 = pd.DataFrame({"label": 1, "prob": rng.uniform(0, 0.6, 20), "compression": "c40",
                        "video_id": [f"b{i % 2}" for i in range(20)]})
    out = per_compression(pd.concat([reals, c23, c40], ignore_index=True))
    assert set(out) == {"c23", "c40"} and out["c23"]["n"] == out["c40"]["n"] == 60
    assert out["c23"]["auc"] > 0.8 > out["c40"]["auc"]


def test_a_weak_blend_mask_is_drawn_too():
    """A self-blend at a quarter strength (peak 64) is outlined like a full one."""
    from dfpipe.manifests.codec import encode_mask
    from dfpipe.pipeline.show.render import overlay

    thumb = np.full((64, 64, 3), 120, np.uint8)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 64
    out = overlay(thumb, encode_mask(mask))
    assert (out[24:40, 24:40, 0] > 150).all() and (out[:10, :10] == 120).all()
    assert (overlay(thumb, encode_mask(np.zeros((64, 64), np.uint8))) == thumb).all()


def test_a_removed_plan_is_refused_then_its_fakes_are_deleted(tmp_path, videos_dir):
    """build.json remembers each step's outputs: a plan gone from the recipe takes its fakes along."""
    import json

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\nsources: [{{reals: {videos_dir}, name: shared}}]\n")
    out = tmp_path / "b"
    old = out / "fakes" / "swap-old"
    old.mkdir(parents=True)
    (out / "build.json").write_text(json.dumps({"steps": {"synth:swap-old": {
        "digest": "0", "status": "done", "outputs": [str(old)]}}}))
    with pytest.raises(BuildError, match="synth:swap-old left the recipe") as info:
        build(recipe, out, only="ingest", progress=False)
    assert info.value.code == 2 and old.is_dir()
    report = build(recipe, out, only="ingest", rebuild_changed=True, progress=False)
    assert not old.exists() and [s.status for s in report.steps][:2] == ["built", "not selected"]
    state = json.loads((out / "build.json").read_text())
    assert set(state["steps"]) == {"ingest:shared"} and state["steps"]["ingest:shared"]["figures"]["written"] == 2


def test_a_source_is_its_resolved_folder_not_its_spelling(tmp_path):
    """`videos` next to the recipe and its absolute path are one source: nothing changes."""
    before = _digests(_recipe(tmp_path), tmp_path / "b")
    spelled = _digests(_recipe(tmp_path, BASE.replace("{reals: videos}", f"{{reals: {tmp_path / 'videos'}}}"),
                               "abs.yaml"), tmp_path / "b")
    assert spelled == before


def test_the_feature_spread_uses_resnet18_only_from_the_local_cache(tmp_path):
    """With ResNet-18's weights in the Hugging Face cache the card's t-SNE uses them, read
    from disk; without them it returns None (and never downloads)."""
    import subprocess
    import sys

    script = f"""
import torch, timm
from pathlib import Path
from safetensors.torch import save_file
snap = Path({str(tmp_path)!r}) / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc"
snap.mkdir(parents=True)
(snap.parents[1] / "refs").mkdir()
(snap.parents[1] / "refs" / "main").write_text("abc")
torch.manual_seed(0)
save_file(timm.create_model("resnet18", pretrained=False).state_dict(), str(snap / "model.safetensors"))
from dfpipe.build.features import resnet18_features
import numpy as np
run = resnet18_features()
print(run([np.zeros((128, 128, 3), np.uint8), np.full((96, 96, 3), 200, np.uint8)]).shape)
"""
    env = {**__import__("os").environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "(2, 512)", out.stderr[-1500:]
    empty = {**env, "HF_HUB_CACHE": str(tmp_path / "empty")}
    none = subprocess.run([sys.executable, "-c", "from dfpipe.build.features import resnet18_features as f; print(f())"],
                          env=empty, capture_output=True, text=True, timeout=300)
    assert none.stdout.strip() == "None", none.stderr[-1500:]
