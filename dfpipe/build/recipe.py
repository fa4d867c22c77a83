"""A benchmark recipe (`dfpipe build RECIPE`): one YAML file naming the sources, the extract
settings, the synthesis plan, the quality metrics, the detectors, the evaluations and the card.

Each section is checked against the settings the stage itself takes (the fields of
`ExtractConfig`, `SynthConfig`, `QualityConfig`, the keyword arguments of `train`), and built
with that stage's own validation, so a recipe accepts exactly what the commands accept and a
mistake is reported with its key (`synthesis[1].blend: blend must be one of ...`). Every
section has defaults: a minimal recipe is a name and one source.

Paths are relative to the recipe's folder. `section_digest` gives each section a digest, so a
build can tell which stages a changed recipe touches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

SECTIONS = ("name", "sources", "extract", "synthesis", "quality", "detectors", "evaluate", "card")
#: `reals`: a folder whose every video or image is real; the others are `dfpipe ingest` kinds
SOURCE_KINDS = ("reals", "folders", "list", "ff++", "dfdc", "celebdf")
#: train's keyword arguments a recipe leaves to the build (paths, process and display knobs)
TRAIN_KEYS_OWNED_BY_BUILD = ("dataset_dir", "out", "resume", "overwrite", "progress", "gpus", "stop_after")
#: a synthesis entry's keys that may be lists: the entry is then one plan per combination
SYNTH_PRODUCT_KEYS = ("method", "blend", "colour")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class RecipeError(ValueError):
    """A recipe that cannot be built: the message starts with the file and the key."""


@dataclass(frozen=True)
class Source:
    """Videos (or images) with their labels: an `ingest` kind and its root."""

    name: str
    kind: str
    root: Path
    compression: tuple[str, ...] | None = None  # ff++ only
    splits: Path | None = None  # ff++ only: the official splits folder


@dataclass(frozen=True)
class SynthPlan:
    """One entry of the synthesis plan after lists are expanded: a fakes dataset of its own."""

    name: str
    config: Any  # SynthConfig


@dataclass(frozen=True)
class Detector:
    name: str
    model: str
    options: Mapping[str, Any]  # train's keyword arguments (epochs, batch, tiny, model_cfg, ...)


@dataclass(frozen=True)
class Evaluation:
    splits: tuple[str, ...] = ("test",)
    external: tuple[Source, ...] = ()  # other datasets, for cross-dataset AUC


@dataclass(frozen=True)
class Recipe:
    path: Path
    name: str
    sources: tuple[Source, ...]
    extract: Any  # ExtractConfig
    synthesis: tuple[SynthPlan, ...]
    quality: Any | None  # QualityConfig; None: no quality stage
    detectors: tuple[Detector, ...]
    evaluate: Evaluation
    card: Mapping[str, str]
    raw: Mapping[str, Any] = field(repr=False)  # the file as read, recorded with the build

    def section_digest(self, section: str) -> str:
        """A short digest of one section as written, so a changed section is seen."""
        text = json.dumps(self.raw.get(section), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_recipe(path: str | Path) -> Recipe:
    """Read and check the recipe at `path`; raises RecipeError naming the key at fault."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise RecipeError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    return parse_recipe(raw, path)


def parse_recipe(raw: Any, path: Path) -> Recipe:
    """The checked recipe of the mapping `raw`, read from `path` (for messages and paths)."""
    where = _Where(path)
    if not isinstance(raw, dict):
        raise where.error("", "a recipe is a mapping of sections (name, sources, ...)")
    where.known(raw, "", SECTIONS)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise where.error("name", "give the benchmark a name of letters, digits, '-', '_' or '.'")
    sources = raw.get("sources")
    if not isinstance(sources, list) or not sources:
        raise where.error("sources", "list at least one source, e.g. `- {folders: videos/}`")
    parsed_sources = tuple(_source(s, f"sources[{i}]", where) for i, s in enumerate(sources))
    _unique([s.name for s in parsed_sources], "sources", where)
    plans = _synthesis(raw.get("synthesis", []), where)
    quality = _quality(raw.get("quality", {}), where)
    detectors = _detectors(raw.get("detectors", []), where)
    return Recipe(
        path=path, name=name, sources=parsed_sources, extract=_extract(raw.get("extract", {}), where),
        synthesis=plans, quality=quality, detectors=detectors, evaluate=_evaluation(raw.get("evaluate", {}), where),
        card=_card(raw.get("card", {}), where), raw=raw,
    )


class _Where:
    """Builds the messages: the file, then the key path."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, message: str) -> RecipeError:
        return RecipeError(f"{self.path}: {key + ': ' if key else ''}{message}")

    def mapping(self, value: Any, key: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping of settings, got {type(value).__name__}")
        return value

    def known(self, value: dict, key: str, allowed: tuple[str, ...] | list[str]) -> None:
        for k in value:
            if k not in allowed:
                hint = _closest(str(k), allowed)
                raise self.error(f"{key}.{k}" if key else str(k), f"unknown key{hint}; known: {', '.join(allowed)}")

    def build(self, key: str, make: Callable[..., Any], values: dict) -> Any:
        """`make(**values)` with its ValueError reported under `key`."""
        try:
            return make(**values)
        except (TypeError, ValueError) as exc:
            raise self.error(key, str(exc)) from None


def _closest(key: str, allowed: tuple[str, ...] | list[str]) -> str:
    import difflib

    match = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {match[0]}?)" if match else ""


def _unique(names: list[str], key: str, where: _Where) -> None:
    seen = set()
    for n in names:
        if n in seen:
            raise where.error(key, f"two entries are named {n!r}; give one a `name:`")
        seen.add(n)


def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def _source(value: Any, key: str, where: _Where) -> Source:
    """`{folders: ROOT}` or `{ff++: ROOT, compression: [c23], splits: DIR}`, with an optional
    `name` (default: the kind and the root's folder name)."""
    value = where.mapping(value, key)
    kinds = [k for k in value if k in SOURCE_KINDS]
    if len(kinds) != 1:
        raise where.error(key, f"name exactly one source kind ({', '.join(SOURCE_KINDS)}) with its root folder"
                               " or listing, e.g. `folders: videos/`")
    kind = kinds[0]
    where.known(value, key, (kind, "name", "compression", "splits"))
    if kind != "ff++" and ("compression" in value or "splits" in value):
        raise where.error(key, "compression and splits apply to ff++ sources only")
    root = _path(value[kind], f"{key}.{kind}", where, must_exist=True)
    compression = value.get("compression")
    if compression is not None:
        compression = tuple([compression] if isinstance(compression, str) else compression)
    splits = _path(value["splits"], f"{key}.splits", where, must_exist=True) if "splits" in value else None
    name = value.get("name") or f"{kind.replace('+', 'p')}-{root.stem or 'root'}"
    if not isinstance(name, str) or not _NAME.match(name):
        raise where.error(f"{key}.name", f"a name of letters, digits, '-', '_' or '.'; got {name!r}")
    return Source(name, kind, root, compression, splits)


def _path(value: Any, key: str, where: _Where, must_exist: bool) -> Path:
    if not isinstance(value, str) or not value:
        raise where.error(key, "expected a path")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (where.path.parent / path).resolve()
    if must_exist and not path.exists():
        raise where.error(key, f"no such file or folder: {path}")
    return path


def _extract(value: Any, where: _Where) -> Any:
    from dfpipe.pipeline.faces.config import ExtractConfig

    value = where.mapping(value, "extract")
    where.known(value, "extract", _fields(ExtractConfig))
    return where.build("extract", ExtractConfig, value)


def _synthesis(value: Any, where: _Where) -> tuple[SynthPlan, ...]:
    """Each entry is a SynthConfig's settings (`count` for `pairs`: swap and reenact fakes;
    self-blend makes one per real video's main track); `method`, `blend` and
    `colour` may be lists, for one plan per combination (named method-blend-colour)."""
    from dfpipe.pipeline.synth.config import SynthConfig

    if value is None:
        return ()
    if not isinstance(value, list):
        raise where.error("synthesis", "expected a list of plans, e.g. `- {method: self-blend, qualities: [c23]}`")
    allowed = (*_fields(SynthConfig), "count", "name")
    plans: list[SynthPlan] = []
    for i, entry in enumerate(value):
        key = f"synthesis[{i}]"
        entry = dict(where.mapping(entry, key))
        where.known(entry, key, allowed)
        if "count" in entry:
            if "pairs" in entry:
                raise where.error(key, "give count or pairs, not both (they are the same setting)")
            entry["pairs"] = entry.pop("count")
        if isinstance(entry.get("qualities"), str):
            entry["qualities"] = [entry["qualities"]]
        if "qualities" in entry:
            entry["qualities"] = tuple(entry["qualities"])
        given_name = entry.pop("name", None)
        lists = {k: entry.pop(k) for k in SYNTH_PRODUCT_KEYS if isinstance(entry.get(k), list)}
        combos = [dict(zip(lists, c)) for c in itertools.product(*lists.values())] if lists else [{}]
        for combo in combos:
            config = where.build(key, SynthConfig, {**entry, **combo})
            if "pairs" in entry and config.method not in ("swap", "reenact"):
                raise where.error(key, f"count applies to swap and reenact; {config.method} makes one video per "
                                       "real video's main track")
            parts = [config.method] if config.method == "reencode" else [config.method, config.blend, config.colour]
            name = given_name if given_name and len(combos) == 1 else "-".join(
                ([given_name] if given_name else []) + parts)
            plans.append(SynthPlan(name, config))
    _unique([p.name for p in plans], "synthesis", where)
    return tuple(plans)


def _quality(value: Any, where: _Where) -> Any | None:
    """The quality stage's settings; `quality: false` skips the stage."""
    from dfpipe.pipeline.quality.config import QualityConfig

    if value is False:
        return None
    value = dict(where.mapping(value, "quality"))
    where.known(value, "quality", _fields(QualityConfig))
    if isinstance(value.get("metrics"), str):
        value["metrics"] = [value["metrics"]]
    if "metrics" in value:
        value["metrics"] = tuple(value["metrics"])
    return where.build("quality", QualityConfig, value)


def _detectors(value: Any, where: _Where) -> tuple[Detector, ...]:
    """Each entry is `model` plus train's keyword arguments (`epochs`, `batch`, `tiny`,
    `model_cfg`: {input_size: 224}, ...); the build owns the paths and resume."""
    from dfpipe.models.registry import list_models
    from dfpipe.train.trainer import train

    if value is None:
        return ()
    if not isinstance(value, list):
        raise where.error("detectors", "expected a list, e.g. `- {model: m2tr, epochs: 5}`")
    params = inspect.signature(train).parameters
    allowed = ("name", *(p for p in params if p not in TRAIN_KEYS_OWNED_BY_BUILD))
    detectors = []
    for i, entry in enumerate(value):
        key = f"detectors[{i}]"
        entry = dict(where.mapping(entry, key))
        where.known(entry, key, allowed)
        model = entry.pop("model", None)
        known = list_models(kind="detector")
        if model not in known:
            raise where.error(f"{key}.model", f"one of {', '.join(known)}; got {model!r}")
        name = entry.pop("name", None) or str(model)
        for k, v in entry.items():
            default = params[k].default
            if isinstance(default, bool) and not isinstance(v, bool):
                raise where.error(f"{key}.{k}", f"expected true or false, got {v!r}")
            if isinstance(default, int) and not isinstance(default, bool) and not isinstance(v, int):
                raise where.error(f"{key}.{k}", f"expected a whole number, got {v!r}")
        detectors.append(Detector(name, str(model), entry))
    _unique([d.name for d in detectors], "detectors", where)
    return tuple(detectors)


def _evaluation(value: Any, where: _Where) -> Evaluation:
    from dfpipe.manifests.schema import SPLITS

    value = where.mapping(value, "evaluate")
    where.known(value, "evaluate", ("splits", "external"))
    splits = value.get("splits", ["test"])
    splits = [splits] if isinstance(splits, str) else splits
    for s in splits:
        if s not in (*SPLITS, "all"):
            raise where.error("evaluate.splits", f"one of {', '.join((*SPLITS, 'all'))}; got {s!r}")
    external = value.get("external", []) or []
    if not isinstance(external, list):
        raise where.error("evaluate.external", "expected a list of sources, e.g. `- {dfdc: /data/dfdc}`")
    parsed = tuple(_source(s, f"evaluate.external[{i}]", where) for i, s in enumerate(external))
    _unique([s.name for s in parsed], "evaluate.external", where)
    return Evaluation(tuple(splits), parsed)


CARD_KEYS = ("title", "description", "license", "authors", "citation")


def _card(value: Any, where: _Where) -> dict[str, str]:
    value = where.mapping(value, "card")
    where.known(value, "card", CARD_KEYS)
    for k, v in value.items():
        if not isinstance(v, str):
            raise where.error(f"card.{k}", "expected text")
    return dict(value)
