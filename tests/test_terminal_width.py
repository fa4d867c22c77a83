"""Output that fits an 80-column terminal: every command's --help shows every option name
whole and rewraps its paragraphs; the CLI's tables keep method and video names whole (a
name breaks only after `_ - / .` or between the words of a CamelCase name), on a real
small dataset and on the printing functions with real rows."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from dfpipe.cli import common
from dfpipe.cli.main import app

WIDTH = 80
runner = CliRunner()


def _invoke(args: list[str]):
    return runner.invoke(app, args, env={"COLUMNS": str(WIDTH)}, terminal_width=WIDTH)


def _commands() -> dict:
    return typer.main.get_command(app).commands


def _whole(token: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", text) is not None


@pytest.mark.parametrize("name", sorted(_commands()))
def test_help_shows_every_option_whole_and_rewraps_paragraphs(name):
    result = _invoke([name, "--help"])
    assert result.exit_code == 0, result.output
    command = _commands()[name]
    for param in command.params:
        for opt in (*param.opts, *param.secondary_opts):
            if opt.startswith("-"):
                assert _whole(opt, result.output), f"{name}: {opt} is not shown whole"
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    # the command's own text: each paragraph filled to the width, not broken where the docstring was
    text = result.output.split("\n\n", 1)[1].split("\nArguments:")[0].split("\nOptions:")[0]
    for paragraph in text.strip().split("\n\n"):
        for line in paragraph.splitlines()[:-1]:
            assert len(line) > WIDTH - 20, f"{name}: short line {line!r} inside a paragraph"


def test_the_command_list_names_every_command_with_its_first_sentence():
    result = _invoke(["--help"])
    assert result.exit_code == 0
    joined = " ".join(result.output.split())
    for name in _commands():
        assert _whole(name, result.output)
    commands = joined.split("Commands:")[1]
    assert "Train M2TR or MAT on DS/faces/." in commands and "..." not in commands


# ----------------------------------------------------------------------------- tables


def _table_rows(output: str, key_column: int) -> list[list[list[str]]]:
    """A printed rich table's data rows as cells of line fragments; a row starts where the
    `key_column` cell (one never wrapped) is filled."""
    rows: list[list[list[str]]] = []
    for line in output.splitlines():
        if not line.startswith("│"):
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if cells[key_column] or not rows:
            rows.append([[c] if c else [] for c in cells])
        else:
            for cell, fragment in zip(rows[-1], cells):
                if fragment:
                    cell.append(fragment)
    return rows


def _broken_at_joints(fragments: list[str]) -> bool:
    return all(re.search(r"[_\-/.]$", a) or (a[-1].islower() and b[0].isupper()) for a, b in zip(fragments, fragments[1:]))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, real_video, fake_video, retinaface_weights) -> Path:
    """The shared FF++ pair listed as real + NeuralTextures fake, 2 frames each."""
    from dfpipe.pipeline.faces import ExtractConfig, extract
    from dfpipe.pipeline.ingest import ingest

    root = tmp_path_factory.mktemp("width")
    (root / "listing.csv").write_text("path,label,source,method,compression\n"
                                      f"{real_video},real,,,c23\n{fake_video},fake,{real_video},NeuralTextures,c23\n")
    ingest("list", root / "listing.csv", root / "DS")
    assert extract([root / "DS"], None, ExtractConfig(count=2, size=64, mesh="none"), progress=False).n_ok == 2
    return root / "DS"


def test_info_videos_keeps_file_and_method_names_whole(dataset, fake_video, real_video):
    result = _invoke(["info", str(dataset), "--videos"])
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= WIDTH
    videos = result.output.split("┏", 1)[1]  # the videos table, after the dataset's (it has no header)
    rows = {"".join(r[0]): r for r in _table_rows(videos, key_column=1)}
    assert set(rows) == {fake_video.name, real_video.name}
    fake = rows[fake_video.name]
    assert "".join(fake[2]) == "NeuralTextures"
    assert _broken_at_joints(fake[0]) and _broken_at_joints(fake[2]), fake


@pytest.fixture
def printed(monkeypatch):
    """`printed(fn, *args)`: what `fn` prints on the CLI's console at 80 columns."""
    monkeypatch.setenv("COLUMNS", str(WIDTH))

    def run(fn, *args) -> str:
        with common.console.capture() as captured:
            fn(*args)
        return captured.get()

    return run


METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")


def test_predict_keeps_long_video_paths_whole(printed, fake_video, real_video):
    from dfpipe.cli.train import print_predictions

    ok = {"status": "ok", "n_faces": 62, "tracks": [{}], "prob": 0.91, "label": "fake"}
    out = printed(print_predictions, {"model": "m2tr", "videos": [
        {"path": str(fake_video), **ok},
        {"path": str(real_video), **ok, "prob": 0.08, "label": "real"},
        {"path": str(fake_video.with_name("missing.mp4")), "status": "error", "error_code": "unreadable",
         "error": "No such file or directory", "n_faces": 0, "tracks": [], "prob": None, "label": None},
    ]})
    assert max(len(line) for line in out.splitlines()) <= WIDTH
    paths = [r[0] for r in _table_rows(out, key_column=1)]
    assert ["".join(p) for p in paths] == [str(fake_video), str(real_video), str(fake_video.with_name("missing.mp4"))]
    assert all(_broken_at_joints(p) for p in paths), paths


def test_evaluate_keeps_method_names_whole(printed):
    from dfpipe.cli.train import print_evaluation

    m = {"n": 1240, "auc": 0.9312, "acc": 0.8813, "eer": 0.1402, "ap": 0.9455, "video_auc": 0.9621}
    out = printed(print_evaluation, {"model": "mat", "n_faces": 6200, "n_videos": 100,
                   "frame": {k: m[k] for k in ("n", "auc", "acc", "eer", "ap")}, "video": {"auc": 0.96},
                   "per_method": {name: m for name in METHODS}, "per_compression": {"c23": m, "c40": m}},
                  Path("ff++/DS"), "test")
    assert max(len(line) for line in out.splitlines()) <= WIDTH
    subsets = [" ".join(r[0]) for r in _table_rows(out, key_column=1)]
    assert subsets == ["all", *(f"method {name}" for name in METHODS), "compression c23", "compression c40"]


def test_the_quality_table_splits_into_parts_that_keep_group_names_whole(printed):
    from dfpipe.cli.quality import print_quality_table

    groups = [("ff++", "-", "c23", "real"), *(("ff++", name, "c23", "fake") for name in METHODS)]
    table = pd.DataFrame([{"dataset": d, "method": m, "compression": c, "label": lab, "videos": 20,
                           "mask_ssim": 0.9412, "lpips": 0.0731, "ewarp": 0.0123, "id_to_source": 0.41}
                          for d, m, c, lab in groups])
    out = printed(print_quality_table, table)
    assert max(len(line) for line in out.splitlines()) <= WIDTH
    assert out.count("dataset quality (means over videos)") >= 2  # six groups do not fit one table
    header_words = re.findall(r"[\w+]+", " ".join(line for line in out.splitlines() if line.startswith("┃")))
    for name in METHODS:
        assert name in header_words, f"{name} not whole in the headers"
