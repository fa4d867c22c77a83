"""The mesh swap on real faces: 4 seconds of the shared FF++ newsreader talking (target)
and a public-domain donor (skimage's astronaut, zoomed with ffmpeg)."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest

from dfpipe.manifests.codec import decode_image
from dfpipe.manifests.parts import read_table
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.pipeline.synth import SynthConfig, synthesize
from dfpipe.pipeline.video.decode import iter_frames, probe
from dfpipe.pipeline.video.writing import ffmpeg_exe

from conftest import make_donor_dataset

pytestmark = pytest.mark.slow
N_FRAMES = 100


@pytest.fixture(scope="module")
def reals(tmp_path_factory, real_video, retinaface_weights):
    root = tmp_path_factory.mktemp("meshswap")
    ff = ffmpeg_exe()
    subprocess.run([ff, "-loglevel", "error", "-i", str(real_video), "-frames:v", str(N_FRAMES), "-c:v", "libx264",
                    "-crf", "18", "-an", str(root / "news.mp4")], check=True)
    return make_donor_dataset(root, root / "news.mp4")


def _ids(ds):
    videos = read_table(ds, "videos", VIDEOS_SCHEMA).to_pandas()
    news = videos[videos.path.str.contains("news")].video_id.iloc[0]
    astro = videos[videos.path.str.contains("astro")].video_id.iloc[0]
    return news, astro


@pytest.fixture(scope="module")
def fakes(reals, tmp_path_factory):
    """{geometry: (DS2, path of the lossless fake)} for the mesh swap and the 5-point paste."""
    news, astro = _ids(reals)
    pairs = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    pairs.write_text(f"target_video_id,source_video_id\n{news},{astro}\n")
    out = {}
    for geometry in ("mesh", "landmarks"):
        ds2 = pairs.parent / geometry
        config = SynthConfig(pairs_file=str(pairs), qualities=("c0",), colour="lct", geometry=geometry)
        assert synthesize(reals, ds2, config, workers=0, progress=False).n_ok == 1
        (row,) = read_table(ds2, "videos", VIDEOS_SCHEMA).to_pandas().query("label == 'fake'").to_dict("records")
        out[geometry] = (ds2, ds2 / row["path"], row)
    return out


def _mouth_opening(video, boxes: dict, landmarks: dict) -> np.ndarray:
    """Inner-lip gap over the face's size, per frame, from Face Mesh on the frames."""
    from dfpipe.pipeline.faces.mesh import FaceMesher

    mesher = FaceMesher()
    out = []
    for frame in iter_frames(video):
        if frame.index not in boxes:
            continue
        pts, _ = mesher.mesh(frame.image, boxes[frame.index][None], landmarks[frame.index][None])
        m = pts[0]
        out.append(np.linalg.norm(m[13, :2] - m[14, :2]) / np.linalg.norm(m[33, :2] - m[263, :2]))
    return np.array(out)


def test_the_swapped_mouth_follows_the_target_and_the_still_paste_does_not(reals, fakes):
    news, _ = _ids(reals)
    rows = read_table(reals, "faces", FACES_SCHEMA, columns=["video_id", "frame_index", "x1", "y1", "x2", "y2",
                                                                 "landmarks"]).to_pandas()
    rows = rows[rows.video_id == news]
    boxes = {r.frame_index: np.array([r.x1, r.y1, r.x2, r.y2]) for r in rows.itertuples()}
    lms = {r.frame_index: np.asarray(r.landmarks).reshape(5, 2) for r in rows.itertuples()}
    real = _mouth_opening(reals / read_table(reals, "videos", VIDEOS_SCHEMA).to_pandas().set_index("video_id").loc[news, "path"],
                          boxes, lms)
    assert real.max() - real.min() > 0.05  # he talks: the mouth opens and closes
    corr = {g: np.corrcoef(real, _mouth_opening(path, boxes, lms))[0, 1] for g, (_, path, _) in fakes.items()}
    assert corr["mesh"] >= 0.9, corr
    assert corr["landmarks"] < corr["mesh"] - 0.2, corr


def test_the_fake_has_every_frame_and_only_the_face_changes(reals, fakes):
    news, _ = _ids(reals)
    real_path = reals / read_table(reals, "videos", VIDEOS_SCHEMA).to_pandas().set_index("video_id").loc[news, "path"]
    ds2, path, row = fakes["mesh"]
    assert probe(path).n_frames == probe(real_path).n_frames == row["n_frames"] == N_FRAMES
    faces = read_table(ds2, "faces", FACES_SCHEMA).to_pandas()
    from dfpipe.manifests.codec import decode_mask

    masks = {r.frame_index: decode_mask(r.mask) for r in faces.itertuples() if r.label == "fake"}
    matrices = {r.frame_index: np.asarray(r.matrix).reshape(2, 3) for r in faces.itertuples() if r.label == "fake"}
    outside, inside = [], []
    for a, b in zip(iter_frames(real_path), iter_frames(path)):
        if a.index not in masks:
            continue
        crop_a = cv2.warpAffine(a.image, matrices[a.index], (256, 256)).astype(float)
        crop_b = cv2.warpAffine(b.image, matrices[a.index], (256, 256)).astype(float)
        grown = cv2.dilate(masks[a.index], np.ones((9, 9), np.uint8)) > 0
        diff = np.abs(crop_a - crop_b).mean(-1)
        outside.append(diff[~grown].mean())
        inside.append(diff[masks[a.index] > 200].mean())
    assert np.mean(outside) < 1.5, outside  # lossless fake: the real frame outside the mask
    assert np.mean(inside) > 8.0, inside


def test_the_swap_looks_like_the_donor_and_stays_steady(reals, fakes):
    pytest.importorskip("dlib")
    from dfpipe.pipeline.quality import QualityConfig, read_quality, score_quality

    ds2, _, _ = fakes["mesh"]
    score_quality(ds2, QualityConfig(metrics=("mask_ssim", "ewarp", "identity", "pose")), workers=0, progress=False)
    frames, videos = read_quality(ds2)
    fake = frames[frames.label == "fake"]
    assert (fake.id_to_source < fake.id_to_target).mean() >= 0.8, fake[["id_to_source", "id_to_target"]]
    assert fake.pose_error.mean() < 5.0
    v = videos.set_index("label")
    assert v.loc["fake", "ewarp"] <= 1.2 * videos[videos.label == "real"].ewarp.max(), videos[["label", "ewarp"]]


def test_reenactment_keeps_the_target_and_takes_the_source_mouth(reals, tmp_path):
    """The astronaut (target, a still photo zoomed) made to talk like the newsreader."""
    news, astro = _ids(reals)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"target_video_id,source_video_id\n{astro},{news}\n")
    ds2 = tmp_path / "re"
    config = SynthConfig(method="reenact", pairs_file=str(pairs), qualities=("c0",))
    assert synthesize(reals, ds2, config, workers=0, progress=False).n_ok == 1
    (row,) = read_table(ds2, "videos", VIDEOS_SCHEMA).to_pandas().query("label == 'fake'").to_dict("records")
    assert row["method"] == "reenact" and row["source_video_id"] == astro and row["target_video_id"] == news
    videos = read_table(reals, "videos", VIDEOS_SCHEMA).to_pandas().set_index("video_id")
    rows = read_table(reals, "faces", FACES_SCHEMA, columns=["video_id", "frame_index", "x1", "y1", "x2", "y2",
                                                                 "landmarks"]).to_pandas()

    def geometry(vid):
        r = rows[rows.video_id == vid]
        first, last = r.frame_index.min(), r.frame_index.max()
        boxes = dict(zip(r.frame_index, np.stack([r.x1, r.y1, r.x2, r.y2], 1)))
        lms = dict(zip(r.frame_index, np.stack(r.landmarks).reshape(-1, 5, 2)))
        # every frame of the track, box and points held from the sampled frame before
        full_b, full_l = {}, {}
        for f in range(first, last + 1):
            k = max(k for k in boxes if k <= f)
            full_b[f], full_l[f] = boxes[k], lms[k]
        return full_b, full_l

    ab, al = geometry(astro)
    fake = _mouth_opening(ds2 / row["path"], ab, al)
    original = _mouth_opening(reals / videos.loc[astro, "path"], ab, al)
    nb, nl = geometry(news)
    source = _mouth_opening(reals / videos.loc[news, "path"], nb, nl)[: len(fake)]
    # a still photo: its mouth does not move; what the measure sees there is Face Mesh's own
    # jitter on the zoom (about +-0.012), as large as the expression the source lends (+-0.02)
    corr_original = np.corrcoef(original, source)[0, 1]
    corr_fake = np.corrcoef(fake, source)[0, 1]
    assert corr_fake >= 0.5 and corr_fake >= corr_original + 0.4, (corr_fake, corr_original)
    if pytest.importorskip("dlib"):
        from dfpipe.pipeline.quality import QualityConfig, read_quality, score_quality

        score_quality(ds2, QualityConfig(metrics=("identity",)), workers=0, progress=False)
        frames, _ = read_quality(ds2)
        assert (frames[frames.label == "fake"].id_to_target < 0.6).all()


@pytest.mark.parametrize("name", ["fr_john1.jpeg", "astronaut"])
def test_donor_hair_over_the_temples_is_found_and_the_beard_is_not(name, photo, detector):
    """Kit Harington's hair hangs over his temples and he has a beard; the astronaut's hair
    covers one temple. Hair is only looked for above the nose tip, along the outline."""
    from dfpipe.pipeline.faces.mesh import FaceMesher
    from dfpipe.pipeline.synth.meshswap import donor_hair

    image = photo(name)
    (det,) = detector.detect([image])
    i = int(np.argmax((det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])))
    mesh = FaceMesher().mesh(image, det.boxes[i:i + 1], det.landmarks[i:i + 1])[0][0]
    hair = donor_hair(image, mesh) == 0
    x1, y1, x2, y2 = det.boxes[i]
    assert hair.sum() > 0.005 * (x2 - x1) * (y2 - y1)
    ys, xs = np.nonzero(hair)
    assert ys.max() < mesh[1, 1] + 0.05 * (y2 - y1)  # nothing below the nose tip: the beard stays
    eyes_x = mesh[[33, 263], 0]
    centre = (xs > eyes_x.min() + 0.25 * np.ptp(eyes_x)) & (xs < eyes_x.max() - 0.25 * np.ptp(eyes_x))
    assert centre.mean() < 0.2  # at the sides, not over the middle of the face


def test_the_donor_frame_is_near_frontal_with_the_mouth_at_rest(reals):
    """The newsreader as a donor: of his 20 sampled faces (talking, turned 13-31 degrees), the
    one rendered on every target frame is more frontal than most, without an open mouth; and
    where the most frontal has its mouth open, a closed one a little less frontal wins."""
    from dfpipe.pipeline.synth.fake import choose_donor, donor_costs
    from dfpipe.pipeline.synth.meshswap import mouth_opening

    news, _ = _ids(reals)
    rows = read_table(reals, "faces", FACES_SCHEMA).to_pandas()
    rows = rows[rows.video_id == news].to_dict("records")

    def opening(row):
        return mouth_opening(np.asarray(row["mesh"]).reshape(-1, 3))

    def turn(row):
        return abs(row["yaw"]) + abs(row["pitch"])

    openings = [opening(r) for r in rows]
    assert max(openings) > 3 * min(openings) + 0.05  # he talks: a closed mouth is a choice
    best = choose_donor(rows)
    assert opening(best) <= 0.5 * max(openings)
    assert turn(best) <= np.percentile([turn(r) for r in rows], 50)
    # the pose alone would take the most frontal of the rest, its mouth open twice as much
    rest = [r for r in rows if r is not best]
    costs = donor_costs(rest)
    by_pose, by_cost = min(rest, key=turn), rest[int(np.argmin(costs))]
    assert opening(by_cost) < 0.5 * opening(by_pose), (opening(by_cost), opening(by_pose))


def test_reencode_copies_each_real_at_each_quality_unchanged_but_for_the_codec(reals, tmp_path):
    """`reencode` is the benchmark's reals at the fakes' qualities: label real, no mask, the
    same faces as the real's main track, and a c40 copy visibly coarser than a c23 one."""
    out = tmp_path / "reals-at"
    summary = synthesize(reals, out, SynthConfig(method="reencode", qualities=("c23", "c40"), include_reals=False),
                         workers=0, progress=False)
    assert summary.n_errors == 0
    videos = read_table(out, "videos", VIDEOS_SCHEMA).to_pandas()
    assert len(videos) == 4 and set(videos["label"]) == {"real"} and videos["method"].isna().all()
    assert sorted(videos["compression"]) == ["c23", "c23", "c40", "c40"] and videos["target_video_id"].isna().all()
    faces = read_table(out, "faces", FACES_SCHEMA).to_pandas()
    source = read_table(reals, "faces", FACES_SCHEMA).to_pandas()
    assert faces["mask"].isna().all() and set(faces["label"]) == {"real"}
    errors = {}
    source_of = dict(zip(videos["video_id"], videos["source_video_id"]))
    for q in ("c23", "c40"):
        copy = faces[faces["video_id"].isin(videos[videos["compression"] == q]["video_id"])].copy()
        copy["real_id"] = copy["video_id"].map(source_of)
        assert len(copy) == len(source)  # each real's one track (keep=main): every face re-cut
        pairs = copy.merge(source, left_on=["real_id", "frame_index", "track_id"],
                           right_on=["video_id", "frame_index", "track_id"], suffixes=("", "_real"))
        assert len(pairs) == len(source)
        errors[q] = np.mean([np.abs(decode_image(a).astype(float) - decode_image(b).astype(float)).mean()
                             for a, b in zip(pairs["image"], pairs["image_real"])])
    assert errors["c23"] < 4.0 and errors["c40"] > 1.3 * errors["c23"], errors
