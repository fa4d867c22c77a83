"""The benchmark recipe (`dfpipe.build.recipe`, issue 15): a five-line recipe gets every
default; each section accepts exactly what its stage takes and a mistake names its key;
list-valued synthesis keys expand to one plan per combination; the shipped examples load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dfpipe.build.recipe import RecipeError, load_recipe, parse_recipe
from dfpipe.pipeline.faces.config import ExtractConfig
from dfpipe.pipeline.quality.config import QualityConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "videos").mkdir(exist_ok=True)
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_a_five_line_recipe_gets_the_stages_defaults(tmp_path):
    recipe = load_recipe(_write(tmp_path, "name: mini\nsources:\n  - folders: videos\n"))
    (source,) = recipe.sources
    assert (source.kind, source.root, source.name) == ("folders", tmp_path / "videos", "folders-videos")
    assert recipe.extract == ExtractConfig() and recipe.quality == QualityConfig()
    assert recipe.synthesis == () and recipe.detectors == () and recipe.evaluate.splits == ("test",)


@pytest.mark.parametrize("text, message", [
    ("name: x\nsources: [{folders: videos}]\nextract: {evry: 5}\n", "extract.evry: unknown key (did you mean every?)"),
    ("name: x\nsources: [{folders: videos}]\nextract: {every: 0}\n", "extract: "),
    ("name: x\nsources: [{folders: nowhere}]\n", "sources[0].folders: no such file or folder"),
    ("name: x\nsources: [{folders: videos, splits: videos}]\n", "sources[0]: compression and splits apply to ff++"),
    ("name: x\nsources: [{folders: videos}]\nsynthesis: [{method: swap}, {method: selfblend}]\n",
     "synthesis[1]: method must be one of swap, reenact, self-blend, external, reencode; got 'selfblend'"),
    ("name: x\nsources: [{folders: videos}]\nsynthesis: [{method: swap, count: 3, pairs: 3}]\n",
     "synthesis[0]: give count or pairs, not both"),
    ("name: x\nsources: [{folders: videos}]\nsynthesis: [{method: self-blend, count: 3}]\n",
     "synthesis[0]: count applies to swap and reenact"),
    ("name: x\nsources: [{folders: videos}]\nquality: {metrics: [mask-ssim, psnr]}\n", "quality: metrics must be"),
    ("name: x\nsources: [{folders: videos}]\ndetectors: [{model: xception}]\n", "detectors[0].model: one of m2tr"),
    ("name: x\nsources: [{folders: videos}]\ndetectors: [{model: mat, epochs: many}]\n",
     "detectors[0].epochs: expected a whole number"),
    ("name: x\nsources: [{folders: videos}]\ndetectors: [{model: mat, out: elsewhere}]\n",
     "detectors[0].out: unknown key"),
    ("name: x\nsources: [{folders: videos}]\nevaluate: {splits: [testing]}\n", "evaluate.splits: one of train, val"),
    ("name: x\nsources: [{folders: videos}]\ncard: {titel: T}\n", "card.titel: unknown key (did you mean title?)"),
    ("name: x\nsource: [{folders: videos}]\n", "source: unknown key (did you mean sources?)"),
    ("name: two words\nsources: [{folders: videos}]\n", "name: give the benchmark a name"),
    ("name: x\nsources: [{folders: videos}, {folders: videos}]\n", "sources: two entries are named 'folders-videos'"),
    ("name: x\nsources: [{folders: videos}\n", "not valid YAML (line 3"),
])
def test_a_mistake_is_reported_with_its_key(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value), str(caught.value)


def test_list_valued_synthesis_keys_give_one_plan_per_combination(tmp_path):
    recipe = load_recipe(_write(tmp_path, """name: grid
sources: [{folders: videos}]
synthesis:
  - {method: swap, blend: [alpha, poisson], colour: [lct, rct], qualities: c40, count: 4}
  - {method: self-blend, name: sbi}
"""))
    names = [p.name for p in recipe.synthesis]
    assert names == ["swap-alpha-lct", "swap-alpha-rct", "swap-poisson-lct", "swap-poisson-rct", "sbi"]
    assert {(p.config.blend, p.config.colour) for p in recipe.synthesis[:4]} == {
        ("alpha", "lct"), ("alpha", "rct"), ("poisson", "lct"), ("poisson", "rct")}
    assert all(p.config.pairs == 4 and p.config.qualities == ("c40",) for p in recipe.synthesis[:4])
    assert recipe.synthesis[4].config.method == "self-blend"


def test_a_changed_section_changes_only_its_digest(tmp_path):
    base = {"name": "d", "sources": [{"folders": "videos"}], "extract": {"every": 5}, "quality": {"metrics": ["ewarp"]}}
    changed = {**base, "quality": {"metrics": ["ewarp", "pose"]}}
    a, b = (parse_recipe(raw, _write(tmp_path, "")) for raw in (base, changed))
    assert a.section_digest("extract") == b.section_digest("extract")
    assert a.section_digest("quality") != b.section_digest("quality")


def test_quality_false_skips_the_stage(tmp_path):
    assert load_recipe(_write(tmp_path, "name: q\nsources: [{folders: videos}]\nquality: false\n")).quality is None


@pytest.mark.parametrize("name", ["demo.yaml", "srdf.yaml"])
def test_the_shipped_examples_load(tmp_path, name):
    """The examples as shipped, with their roots pointed at folders that exist here."""
    raw = yaml.safe_load((EXAMPLES / name).read_text())
    for source in [*raw["sources"], *raw.get("evaluate", {}).get("external", [])]:
        for key in ("reals", "folders", "ff++", "dfdc", "celebdf", "splits"):
            if key in source:
                source[key] = str(tmp_path)
    recipe = parse_recipe(raw, EXAMPLES / name)
    assert recipe.sources and recipe.detectors and recipe.synthesis
    if name == "srdf.yaml":
        pairs = {p.name: p.config.pairs for p in recipe.synthesis if p.config.method in ("swap", "reenact")}
        assert pairs == {"swap-alpha-lct": 1000, "swap-poisson-lct": 1000, "reenact-alpha-lct": 1000}
        assert {d.model for d in recipe.detectors} == {"m2tr", "mat"} and len(recipe.evaluate.external) == 2
