"""`dfpipe merge`: several dataset directories as one valid dataset, each video once."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dfpipe.cli.main import app
from dfpipe.manifests.parts import part_keys, read_table
from dfpipe.manifests.schema import FACES_SCHEMA, VIDEOS_SCHEMA
from dfpipe.manifests.validate import validate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory, real_video, fake_video, retinaface_weights):
    """DS1: the FF++ real alone; DS2: the real and its NeuralTextures fake, masked."""
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.pipeline.ingest import ingest
    from dfpipe.pipeline.masks import masks

    root = tmp_path_factory.mktemp("merge")
    config = ExtractConfig(count=3, size=128, mesh="none")
    assert extract([real_video], root / "ds1", config, workers=0, progress=False).n_ok == 1
    (root / "pair.csv").write_text(f"path,label,method,source\n{real_video},real,,\n"
                                   f"{fake_video},fake,NeuralTextures,{real_video}\n")
    ingest("list", root / "pair.csv", root / "ds2")
    assert extract([root / "ds2"], None, config, workers=0, progress=False).n_ok == 2
    assert masks(root / "ds2", workers=0, progress=False).n_errors == 0
    return root / "ds1", root / "ds2"


def test_merge_takes_a_shared_video_once_and_validates(two_datasets, tmp_path):
    ds1, ds2 = two_datasets
    out = tmp_path / "merged"
    result = CliRunner().invoke(app, ["merge", str(ds1), str(ds2), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = validate(out, deep=True)
    assert report.errors == [] and report.counts["videos"] == 2
    videos = {r["label"]: r for r in read_table(out, "videos", VIDEOS_SCHEMA).to_pylist()}
    assert videos["fake"]["source_video_id"] == videos["real"]["video_id"]  # the pair holds across inputs
    faces = read_table(out, "faces", FACES_SCHEMA, columns=["face_id", "video_id", "mask"]).to_pandas()
    assert faces["face_id"].is_unique and len(faces) == 6
    assert faces.loc[faces["video_id"] == videos["fake"]["video_id"], "mask"].notna().all()
    assert part_keys(out, "masks") == {videos["fake"]["video_id"]}
    again = CliRunner().invoke(app, ["merge", str(ds1), str(ds2), "--out", str(out)])
    assert again.exit_code == 0 and "merged 0 new videos" in again.output


def test_merge_refuses_what_is_no_dataset(tmp_path):
    result = CliRunner().invoke(app, ["merge", str(tmp_path), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "not a dataset directory" in result.output
