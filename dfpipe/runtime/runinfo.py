"""`DS/run.json`: what produced a dataset directory, and the guard against mixing runs.

Each stage records its parameters under `stages.<name>`. Re-running a stage with the same
parameters resumes; with different output-affecting parameters it is refused, because a
dataset mixing two settings would silently corrupt a benchmark. A stage may name parameters
whose other value adds items of their own instead (synthesize's seed): those may differ,
and every value that wrote into the directory is kept under `stages.<name>.added`.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

from dfpipe.runtime.files import write_text_atomic

RUN_FILE = "run.json"
_VERSIONED = ("torch", "torchvision", "av", "decord", "opencv-python-headless", "pyarrow", "dask", "numpy", "timm")


class ParamsMismatch(ValueError):
    """The output directory was made with other parameters."""


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "dfpipe": _version("dfpipe")}
    for name in _VERSIONED:
        v = _version(name)
        if v:
            out[name] = v
    return out


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def read_run(root: str | Path) -> dict[str, Any]:
    path = Path(root) / RUN_FILE
    if not path.is_file():
        return {}
    with open(path) as fh:
        return json.load(fh)


def _write_run(root: Path, data: Mapping[str, Any]) -> None:
    write_text_atomic(root / RUN_FILE, json.dumps(data, indent=2, sort_keys=True, default=str))


def check_params(root: str | Path, stage: str, params: Mapping[str, Any], added: Sequence[str] = ()) -> None:
    """Raise ParamsMismatch when `stage` already ran in `root` with other parameters; those
    named in `added` may differ (their new value adds to the output)."""
    previous = read_run(root).get("stages", {}).get(stage)
    if not previous:
        return
    old = previous.get("params", {})
    new = json.loads(json.dumps(dict(params), default=str))
    diffs = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
             if old.get(k) != new.get(k) and k not in added]
    if diffs:
        also = f" (only {', '.join(added)} may differ: another value adds to the output)" if added else ""
        raise ParamsMismatch(
            f"{root} already holds a `{stage}` run made with other parameters ({'; '.join(diffs)}). "
            f"Re-run with the same parameters to resume{also}, or choose a new output directory."
        )


def record_stage(
    root: str | Path, stage: str, params: Mapping[str, Any], weights: Mapping[str, str] | None = None,
    execution: Mapping[str, Any] | None = None, added: Sequence[str] = (),
) -> None:
    """Write (or refresh) the stage's entry after check_params passed; `execution` says
    where the latest run's items ran (serial, a local cluster, a scheduler) and why. `params`
    are the latest run's; for each parameter named in `added`, `added.<name>` lists every
    value any run into `root` had, in the order they came."""
    root = Path(root)
    data = read_run(root)
    stages = data.setdefault("stages", {})
    entry = stages.get(stage, {})
    plain = json.loads(json.dumps(dict(params), default=str))
    for name in added:
        seen = entry.setdefault("added", {}).setdefault(name, [])
        for value in (entry.get("params", {}).get(name, plain.get(name)), plain.get(name)):
            if value not in seen:
                seen.append(value)
    entry.update(
        {
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "params": plain,
            "weights": dict(weights or {}),
            "versions": package_versions(),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    if execution is not None:
        entry["execution"] = dict(execution)
    entry.setdefault("created", entry["updated"])
    stages[stage] = entry
    data["schema_version"] = "1"
    _write_run(root, data)


def forget_stage(root: str | Path, stage: str) -> None:
    """Drop `stage`'s entry (its outputs were cleared), so its next run records afresh
    instead of being held to the parameters of output that no longer exists."""
    data = read_run(root)
    if data.get("stages", {}).pop(stage, None) is not None:
        _write_run(Path(root), data)
