"""`dfpipe show`: the contact sheet and the gallery of a real extracted, masked FF++ pair (plus
a broken file, whose error must show), the filters, and the CLI's refusals."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from dfpipe.cli.main import app
from dfpipe.manifests.codec import decode_image, decode_mask
from dfpipe.manifests.parts import read_table
from dfpipe.manifests.schema import FACES_SCHEMA

SIZE = 96


@pytest.fixture(scope="module")
def masked_ds(tmp_path_factory, real_video, fake_video):
    """The FF++ pair (real + NeuralTextures fake, 3 frames each) with pair masks, and an
    empty `broken.mp4` that extract turns into an error row."""
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.pipeline.ingest import ingest
    from dfpipe.pipeline.masks import masks

    root = tmp_path_factory.mktemp("show")
    (root / "broken.mp4").write_bytes(b"")
    (root / "listing.csv").write_text(
        f"path,label,method,source\n{real_video},real,,\n{fake_video},fake,NeuralTextures,{real_video}\n"
        f"{root / 'broken.mp4'},real,,\n")
    ds = root / "ds"
    ingest("list", root / "listing.csv", ds)
    assert extract([ds], None, ExtractConfig(count=3, size=128), workers=0, progress=False).n_ok == 2
    assert masks(ds, workers=0, progress=False).n_ok == 1
    return ds


def _sections(page: str) -> dict[str, str]:
    """{file name: section html} of the gallery."""
    return {m.group(1): m.group(0) for m in re.finditer(r"<section [^>]*data-name=\"([^\"]+)\".*?</section>", page, re.S)}


def test_show_writes_a_sheet_and_a_gallery_with_masks_and_errors(masked_ds, real_video, fake_video):
    from dfpipe.pipeline.show import show

    result = show(masked_ds, per_video=2, size=SIZE)
    assert (result.n_videos, result.n_faces, result.n_masks) == (3, 4, 2)

    sheet = cv2.imread(str(result.sheet))
    # a 22-pixel title and a row of thumbnails per video, a 4-pixel gap after each
    assert sheet.shape == (3 * (22 + SIZE + 4), 2 * SIZE, 3)

    page = result.page.read_text()
    sections = _sections(page)
    assert set(sections) == {real_video.name, fake_video.name, "broken.mp4"}
    assert 'data-label="fake"' in sections[fake_video.name] and 'data-method="NeuralTextures"' in sections[fake_video.name]
    assert "empty_file" in sections["broken.mp4"] and "no faces" in sections["broken.mp4"]
    assert sections[real_video.name].count('alt="crop"') == 2 and 'alt="mask"' not in sections[real_video.name]
    assert sections[fake_video.name].count('alt="mask"') == 2 and "mask: pair" in sections[fake_video.name]
    for src in re.findall(r'src="([^"]+)"', page):  # every picture the page names is there
        assert (result.page.parent / src).is_file(), src


def test_the_masked_picture_tints_the_mask_and_keeps_the_face(masked_ds):
    """Outside the mask the masked thumbnail is the crop; inside it leans red."""
    from dfpipe.pipeline.show.render import overlay, thumbnail

    faces = read_table(masked_ds, "faces", FACES_SCHEMA, columns=["image", "mask"]).to_pylist()
    face = next(f for f in faces if f["mask"])
    thumb = thumbnail(face["image"], SIZE)
    assert np.abs(thumb.astype(int) - cv2.resize(decode_image(face["image"]), (SIZE, SIZE),
                                                 interpolation=cv2.INTER_AREA)).max() == 0
    out = overlay(thumb, face["mask"])
    m = cv2.resize(decode_mask(face["mask"]), (SIZE, SIZE)) > 127
    inside = cv2.erode(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0  # off the outline
    outside = cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    assert inside.sum() > 50 and outside.sum() > 50
    assert np.array_equal(out[outside], thumb[outside])
    red_gain = out[inside][:, 0].astype(int) - thumb[inside][:, 0]
    green_drop = thumb[inside][:, 1].astype(int) - out[inside][:, 1]
    assert red_gain.mean() > 10 and green_drop.mean() > 10


def test_filters_keep_matching_videos_and_drop_old_pictures(masked_ds, tmp_path, fake_video):
    from dfpipe.pipeline.show import show

    out = tmp_path / "gallery"
    every = show(masked_ds, out=out, per_video=2, size=SIZE)
    assert len(list((out / "img").glob("*.jpg"))) == 6  # 4 crops, 2 masked
    fakes = show(masked_ds, out=out, per_video=2, size=SIZE, labels=["fake"])
    assert (fakes.n_videos, fakes.n_faces) == (1, 2)
    assert len(list((out / "img").glob("*.jpg"))) == 4  # the real's crops are gone
    assert set(_sections(fakes.page.read_text())) == {fake_video.name}
    by_stem = show(masked_ds, out=out, per_video=1, size=SIZE, videos=[fake_video.stem])
    by_method = show(masked_ds, out=out, per_video=1, size=SIZE, methods=["NeuralTextures"])
    assert by_stem.n_videos == by_method.n_videos == 1
    assert show(masked_ds, out=out, size=SIZE, methods=["-"]).n_videos == 2  # the real and the broken one
    assert every.page == fakes.page


def test_show_cli(masked_ds, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["show", str(masked_ds), "--out", str(tmp_path / "g"), "--per-video", "1"])
    assert res.exit_code == 0, res.output
    assert "3 video(s), 2 face(s) sampled, 1 with a mask" in res.output
    assert (tmp_path / "g" / "index.html").is_file() and (tmp_path / "g" / "contact_sheet.png").is_file()
    for args, words in (([str(tmp_path / "nope")], "not a dataset directory"),
                        ([str(masked_ds), "--label", "fakes"], "--label must be one of"),
                        ([str(masked_ds), "--per-video", "0"], "--per-video must be")):
        res = runner.invoke(app, ["show", *args])
        assert res.exit_code == 2 and words in res.output, res.output
    assert not (tmp_path / "nope").exists()
