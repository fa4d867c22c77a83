"""`synthesize --variants N` and adding a seed to an existing fakes dataset, end to end on the
real-face clips of tests/test_synth_run.py (its `reals` fixture): a cut of the shared FF++
real video and a slow zoom over skimage's astronaut, extracted with every 2nd frame sampled."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import test_synth_run
from test_synth_run import _faces, _videos
from typer.testing import CliRunner

from dfpipe.cli.main import app
from dfpipe.manifests.codec import decode_image
from dfpipe.manifests.validate import validate
from dfpipe.pipeline.synth import SynthConfig, synthesize
from dfpipe.runtime.runinfo import ParamsMismatch, read_run

pytestmark = pytest.mark.slow
reals = test_synth_run.reals  # the real DS of test_synth_run's tests (a module fixture: extracted once here)
#: small, lossless fakes: 2 changed frames, of which frame 0 is sampled (a face crop)
SBI = dict(method="self-blend", qualities=("c0",), per_video=2)
CLI_SBI = ["--method", "self-blend", "--quality", "c0", "--per-video", "2", "--workers", "0", "--no-progress"]


def _fakes(root):
    videos = _videos(root)
    return videos[videos.label == "fake"].set_index("video_id").sort_index()


def _crops(root) -> dict[tuple[str, int], np.ndarray]:
    """(video id, frame) -> the fake's face crop."""
    faces = _faces(root)
    faces = faces[faces.label == "fake"]
    return {(f.video_id, f.frame_index): decode_image(f.image).astype(np.int16) for f in faces.itertuples()}


def _stamps(root) -> dict:
    return {p: p.stat().st_mtime_ns for p in (root / "fakes").rglob("*.mp4")}


@pytest.fixture(scope="module")
def three(reals, tmp_path_factory):
    out = tmp_path_factory.mktemp("variants") / "DS2"
    summary = synthesize(reals, out, SynthConfig(**SBI, variants=3), workers=0, progress=False)
    return out, summary


@pytest.fixture(scope="module")
def one(reals, tmp_path_factory):
    """Fakes of seed 0, one per track; the last test adds seed 1 to them."""
    out = tmp_path_factory.mktemp("seeds") / "DS2"
    assert synthesize(reals, out, SynthConfig(**SBI), workers=0, progress=False).n_ok == 2
    return out


def test_variants_give_three_fakes_per_track_each_with_its_own_draws(reals, three):
    out, summary = three
    assert summary.n_items == summary.n_ok == 6 and summary.n_errors == 0
    fakes = _fakes(out)
    assert len(fakes) == 6 and all(fakes.status == "ok")
    crops = _crops(out)
    for _, group in fakes.groupby("source_video_id"):
        metas = {vid: json.loads(m) for vid, m in group.meta.items()}
        assert sorted(m["variant"] for m in metas.values()) == [0, 1, 2]
        first = next(vid for vid, m in metas.items() if m["variant"] == 0)
        assert "-v" not in first, "the first variant keeps the id a fake had before --variants"
        for vid, m in metas.items():
            if m["variant"]:
                assert vid == first.replace("-c0", f"-v{m['variant']}-c0")
        assert len({m["item_seed"] for m in metas.values()}) == 3
        assert len({json.dumps(m["self_blend"], sort_keys=True) for m in metas.values()}) == 3
        for a, b in itertools.combinations(sorted(metas), 2):
            frames = sorted(f for v, f in crops if v == a)
            assert frames == [0]
            diff = np.mean([np.abs(crops[a, f] - crops[b, f]).mean() for f in frames])
            assert diff > 0.5, (a, b, diff)
    assert not validate(out, deep=True).errors


def test_variants_are_reproducible_and_the_first_is_the_fake_of_one_variant(reals, three, one, tmp_path):
    out, _ = three
    again = tmp_path / "again"
    synthesize(reals, again, SynthConfig(**SBI, variants=3), workers=0, progress=False)
    assert list(_fakes(again).index) == list(_fakes(out).index)
    first, second = _crops(out), _crops(again)
    assert first.keys() == second.keys()
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    seed0 = {vid for vid, meta in _fakes(one).meta.items() if json.loads(meta)["seed"] == 0}
    single = {k: crop for k, crop in _crops(one).items() if k[0] in seed0}
    assert {v for v, _ in single} == {v for v, _ in first if "-v" not in v}
    for key in single:
        np.testing.assert_array_equal(single[key], first[key])


def test_other_changes_into_a_fakes_dataset_are_still_refused(reals, one):
    stamps, run = _stamps(one), read_run(one)
    for args in (["--seed", "1", "--blend", "poisson"], ["--variants", "2"], ["--per-video", "3"]):
        result = CliRunner().invoke(app, ["synthesize", str(reals), "--out", str(one), *CLI_SBI, *args])
        assert result.exit_code == 2, (args, result.output)
        assert "other parameters" in result.output
    with pytest.raises(ParamsMismatch, match="only seed may differ"):
        synthesize(reals, one, SynthConfig(**{**SBI, "region": "inner"}, seed=1), workers=0, progress=False)
    assert _stamps(one) == stamps and read_run(one) == run


def test_another_seed_adds_its_fakes_and_reruns_resume(reals, one):
    out = one
    runner = CliRunner()
    base = ["synthesize", str(reals), "--out", str(out), *CLI_SBI]
    seed0 = set(_fakes(out).index)
    assert len(seed0) == 2
    result = runner.invoke(app, [*base, "--seed", "1"])
    assert result.exit_code == 0, result.output
    fakes = _fakes(out)
    assert len(fakes) == 4 and seed0 < set(fakes.index) and fakes.index.is_unique
    assert sorted(json.loads(m)["seed"] for m in fakes.meta) == [0, 0, 1, 1]
    assert len(_videos(out)) == 4 + 2, "the two reals listed once"
    assert runner.invoke(app, ["validate", str(out)]).exit_code == 0
    assert not validate(out, deep=True).errors
    entry = read_run(out)["stages"]["synthesize"]
    assert entry["added"] == {"seed": [0, 1]} and entry["params"]["seed"] == 1

    stamps = _stamps(out)
    for seed in (0, 1):
        again = synthesize(reals, out, SynthConfig(**SBI, seed=seed), workers=0, progress=False)
        assert again.n_items == again.n_skipped == again.n_ok == 2
    assert _stamps(out) == stamps and len(_fakes(out)) == 4

    # a run killed before one fake's marker (its videos part, written last) makes only that one again
    lost = next(vid for vid in fakes.index if json.loads(fakes.meta[vid])["seed"] == 1)
    (out / "videos" / f"part-{lost}.parquet").unlink()
    resumed = synthesize(reals, out, SynthConfig(**SBI, seed=1), workers=0, progress=False)
    assert resumed.n_skipped == 1 and resumed.n_ok == 2
    assert list(_fakes(out).index) == list(fakes.index)
    assert {p for p, t in _stamps(out).items() if stamps[p] != t} == {out / fakes.path[lost]}


def test_variants_are_checked():
    with pytest.raises(ValueError, match="--variants"):
        SynthConfig(variants=0)
    with pytest.raises(ValueError, match="reencode"):
        SynthConfig(method="reencode", variants=2)


def test_run_json_keeps_every_added_value_also_of_a_run_made_before(tmp_path):
    from dfpipe.runtime.runinfo import check_params, record_stage

    record_stage(tmp_path, "synthesize", {"seed": 0, "blend": "alpha"})  # as runs before `added` recorded it
    check_params(tmp_path, "synthesize", {"seed": 3, "blend": "alpha"}, added=("seed",))
    with pytest.raises(ParamsMismatch, match="blend"):
        check_params(tmp_path, "synthesize", {"seed": 3, "blend": "poisson"}, added=("seed",))
    for seed in (3, 0, 3):
        record_stage(tmp_path, "synthesize", {"seed": seed, "blend": "alpha"}, added=("seed",))
    entry = read_run(tmp_path)["stages"]["synthesize"]
    assert entry["added"] == {"seed": [0, 3]} and entry["params"] == {"seed": 3, "blend": "alpha"}
