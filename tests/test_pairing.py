"""Pairing of swap / reenact fakes on real faces: short zoom clips over shared photos of
five people, two of whom (Rose Leslie, Kit Harington) appear in two photos each, so their
two videos are one identity each."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

pytestmark = pytest.mark.slow  # extracts six short clips (about 10 s) and makes one fake
#: clip name -> (shared photo, person): two people have two photos each
PEOPLE = {
    "rose_a": ("fr_rose_leslie1.jpg", "rose"),
    "rose_b": ("fr_rose_leslie2.jpg", "rose"),
    "kit_a": ("fr_john1.jpeg", "kit"),
    "kit_b": ("fr_johnsnow_test1.jpg", "kit"),
    "biden": ("fr_biden2.jpg", "biden"),
    "obama": ("fr_obama_small.jpg", "obama"),
}
N_FRAMES = 20  # 2 s at 10 fps
#: (target, source) pairs of clips showing different people: 26
CROSS_PERSON = sum(1 for _, a in PEOPLE.values() for _, b in PEOPLE.values() if a != b)


def _zoom_clip(photo: Path, out: Path, width: int = 480) -> None:
    """A 2-second slow zoom over a photo (so the face moves a little from frame to frame)."""
    from dfpipe.pipeline.video.writing import run_ffmpeg

    h, w = cv2.imread(str(photo)).shape[:2]
    height = int(round(width * h / w / 2)) * 2
    zoom = (f"scale={width}:{height},zoompan=z='1+0.004*on':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)'"
            f":d={N_FRAMES}:s={width}x{height}:fps=10")
    run_ffmpeg(["-loop", "1", "-i", photo, "-vf", zoom, "-frames:v", N_FRAMES, "-c:v", "libx264", "-crf", "18",
                "-pix_fmt", "yuv420p", out])


def make_people_dataset(root: Path, faces_dir: Path, label: str = "real") -> Path:
    """The clips of PEOPLE ingested with `label` from a listing and extracted (every 5th
    frame, 160-pixel crops): DS under `root`."""
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.pipeline.ingest import ingest

    clips = root / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    lines = ["path,label"]
    for name, (photo, _) in PEOPLE.items():
        _zoom_clip(faces_dir / photo, clips / f"{name}.mp4")
        lines.append(f"{clips / name}.mp4,{label}")
    (root / "listing.csv").write_text("\n".join(lines) + "\n")
    ds = root / "DS"
    ingest("list", root / "listing.csv", ds)
    summary = extract([ds], None, ExtractConfig(every=5, size=160), workers=0, progress=False)
    assert summary.n_ok == len(PEOPLE), summary
    return ds


@pytest.fixture(scope="module")
def people(tmp_path_factory, faces_dir, retinaface_weights) -> Path:
    return make_people_dataset(tmp_path_factory.mktemp("people"), faces_dir)


def _person(ds: Path) -> dict[str, str]:
    """video id -> the person of PEOPLE it shows (from the clip's file name)."""
    from dfpipe.pipeline.synth.pairing import real_videos

    return {vid: PEOPLE[Path(row["path"]).stem][1] for vid, row in real_videos(ds).items()}


def _tracks(ds: Path):
    from dfpipe.pipeline.synth.pairing import real_videos, track_sizes

    return track_sizes(ds, set(real_videos(ds)))


def test_identities_put_one_persons_videos_together_and_others_apart(people):
    from dfpipe.models.face_descriptor import SAME_PERSON
    from dfpipe.pipeline.synth.identities import identities, pair_distance

    person = _person(people)
    ids = identities(people, _tracks(people))
    assert len(ids.identity) == len(PEOPLE)
    by_person = {}
    for ref, identity in ids.identity.items():
        by_person.setdefault(person[ref.video_id], set()).add(identity)
    assert all(len(v) == 1 for v in by_person.values()), by_person
    assert len({next(iter(v)) for v in by_person.values()}) == 4, "four people, four identities"
    refs = sorted(ids.identity, key=lambda r: r.video_id)
    for a in refs:
        for b in refs:
            if a != b:
                d = pair_distance(ids, a, b)[0]
                same = person[a.video_id] == person[b.video_id]
                assert (d < SAME_PERSON) == same, (person[a.video_id], person[b.video_id], d)


def test_similar_gives_each_target_the_nearest_other_person_reproducibly(people):
    import numpy as np

    from dfpipe.pipeline.synth import SynthConfig, plan_jobs
    from dfpipe.pipeline.synth.identities import identities, look_alike_cost, pair_distance

    person = _person(people)
    ids = identities(people, _tracks(people))
    centres = {i: (np.mean([ids.descriptors[r] for r in rs], axis=0), np.mean([ids.tones[r] for r in rs], axis=0))
               for i, rs in ids.members().items()}
    jobs = plan_jobs(people, SynthConfig(method="swap", pairing="similar", pairs=len(PEOPLE), seed=3))
    assert sorted(j.pair.target.video_id for j in jobs) == sorted(person), "each target once"
    for j in jobs:
        t, s = j.pair.target, j.pair.source
        assert person[t.video_id] != person[s.video_id]
        others = {i: look_alike_cost(ids.descriptors[t], ids.tones[t], *c) for i, c in centres.items() if i != ids.identity[t]}
        assert ids.identity[s] == min(others, key=others.get), (person[t.video_id], person[s.video_id], others)
        assert j.note["pairing"] == "similar"
        assert j.note["descriptor_distance"] == pytest.approx(pair_distance(ids, t, s)[0], abs=1e-4)
    again = plan_jobs(people, SynthConfig(method="swap", pairing="similar", pairs=len(PEOPLE), seed=3))
    assert [(j.pair, j.key) for j in again] == [(j.pair, j.key) for j in jobs]
    other_seed = plan_jobs(people, SynthConfig(method="swap", pairing="similar", pairs=len(PEOPLE), seed=4))
    assert {j.pair for j in other_seed} == {j.pair for j in jobs}, "the nearest person does not depend on the seed"
    many = plan_jobs(people, SynthConfig(method="swap", pairing="similar", pairs=100, seed=3))
    assert len(many) == len({j.pair for j in many}) == CROSS_PERSON, "every cross-person pair, once"
    assert all(person[j.pair.target.video_id] != person[j.pair.source.video_id] for j in many)
    reenact = plan_jobs(people, SynthConfig(method="reenact", pairing="similar", pairs=len(PEOPLE), seed=3))
    assert [j.pair for j in reenact] == [j.pair for j in jobs], "reenact pairs as swap does"


def test_random_pairs_never_pair_one_person_and_fall_back_to_videos_without_dlib(people, monkeypatch):
    import sys

    from dfpipe.pipeline.synth import SynthConfig, plan_jobs

    person = _person(people)
    jobs = plan_jobs(people, SynthConfig(method="swap", pairs=100, seed=0))
    assert len(jobs) == len({j.pair for j in jobs}) == CROSS_PERSON
    assert all(person[j.pair.target.video_id] != person[j.pair.source.video_id] for j in jobs)
    assert all(j.note["pairing"] == "random" and j.note["identities"] == "descriptors" for j in jobs)

    monkeypatch.setitem(sys.modules, "dlib", None)  # as where dlib-bin is not installed
    blind = plan_jobs(people, SynthConfig(method="swap", pairs=100, seed=0))
    assert len(blind) == 6 * 5, "any other video"
    assert any(person[j.pair.target.video_id] == person[j.pair.source.video_id] for j in blind)
    assert "dlib" in blind[0].note["identities"] and "other videos" in blind[0].note["identities"]
    with pytest.raises(ValueError, match="similar needs face descriptors.*dlib"):
        plan_jobs(people, SynthConfig(method="swap", pairing="similar", pairs=2))


def test_an_unlabelled_dataset_is_refused_before_any_work(tmp_path, faces_dir, retinaface_weights):
    from typer.testing import CliRunner

    from dfpipe.cli.main import app
    from dfpipe.pipeline.synth import SynthConfig, synthesize

    ds = make_people_dataset(tmp_path, faces_dir, label="unknown")
    with pytest.raises(ValueError, match="no video is labelled real.*dfpipe ingest list"):
        synthesize(ds, tmp_path / "out", SynthConfig(pairs=2), workers=0, progress=False)
    result = CliRunner().invoke(app, ["synthesize", str(ds), "--out", str(tmp_path / "cli"), "--pairing", "similar",
                                      "--workers", "0", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "labelled real" in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "cli").exists()
    # the same videos relabelled fake by a re-ingest: a fake is never a source or target
    from dfpipe.pipeline.ingest import ingest

    listing = tmp_path / "listing.csv"
    listing.write_text(listing.read_text().replace(",unknown", ",fake"))
    ingest("list", listing, ds)
    with pytest.raises(ValueError, match=r"no video is labelled real \(6 fake, 0 unlabelled\).*never a fake"):
        synthesize(ds, tmp_path / "out", SynthConfig(pairs=2), workers=0, progress=False)
    assert not (tmp_path / "out").exists()


def test_pairing_file_needs_a_pairs_file_and_bad_pairings_are_refused(tmp_path):
    from typer.testing import CliRunner

    from dfpipe.cli.main import app

    runner = CliRunner()
    for args, words in ((["--pairing", "file"], "--pairs-file"), (["--pairing", "lookalike"], "similar")):
        result = runner.invoke(app, ["synthesize", str(tmp_path), "--out", str(tmp_path / "x"), *args])
        assert result.exit_code == 2, (args, result.output)
        assert words in result.output, result.output
    assert not (tmp_path / "x").exists()


def test_similar_fakes_record_the_pairing_and_distance(people, tmp_path):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from dfpipe.cli.main import app

    out = tmp_path / "DS2"
    result = CliRunner().invoke(app, ["synthesize", str(people), "--out", str(out), "--pairing", "similar", "--pairs", "1",
                                      "--per-video", "2", "--quality", "c40", "--workers", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    fake = pd.read_parquet(out / "videos").query("label == 'fake'").iloc[0]
    meta = json.loads(fake.meta)
    person = _person(people)
    assert fake.status == "ok" and person[fake.source_video_id] != person[fake.target_video_id]
    assert meta["pairing"] == "similar" and 0.6 < meta["descriptor_distance"] < 1.2
