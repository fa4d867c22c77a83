"""Typer options whose defaults are the library's, so each default is written once.

    def train(
        epochs: int = option("dfpipe.train.trainer:train", "epochs", help="Epochs."),
        out: Path = option(TRAIN, "out", "--out", "-o", help="Run folder."),
    ) -> None: ...

`source` is where the library keeps the default of parameter `name`:

- a dataclass: the field's default (or its `default_factory()`), e.g. `option(ExtractConfig, "size")`;
- a function: the default in its signature, e.g. `option(ingest, "splits", "--splits")`;
- `"package.module:name"` naming either, read from the module's source without importing
  it. Use this for library modules that load torch or much else, so `dfpipe --help` and the
  Dask client stay light; the defaults it reads must be literals (`ast.literal_eval`) or
  names of literal module constants.

A parameter without a default gives `...` (a required option). `library_value` reads a
module constant the same way, for help texts that name per-model defaults. Further positional
arguments (`"--out", "-o"`) and keywords (`help=`) go to `typer.Option` unchanged.
`tests/test_cli_mirror.py` checks that every command's defaults equal its library's.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.util
import inspect
from pathlib import Path
from typing import Any

import typer


def option(source: Any, name: str, *param_decls: str, **kwargs: Any) -> Any:
    """`typer.Option` with the default of `name` in `source` (see the module docstring); a
    tuple default becomes a list, as Typer wants for a repeatable option."""
    default = library_default(source, name)
    return typer.Option(list(default) if isinstance(default, tuple) else default, *param_decls, **kwargs)


def library_default(source: Any, name: str) -> Any:
    """The default of parameter or field `name` of `source`; `...` when it has none."""
    if isinstance(source, str):
        node = _source_defaults(source)[name]
        return ... if node is None else _literal(node, source)
    if dataclasses.is_dataclass(source):
        field = {f.name: f for f in dataclasses.fields(source)}[name]
        if field.default is not dataclasses.MISSING:
            return field.default
        if field.default_factory is not dataclasses.MISSING:
            return field.default_factory()
        return ...
    default = inspect.signature(source).parameters[name].default
    return ... if default is inspect.Parameter.empty else default


def library_value(target: str) -> Any:
    """The literal value of module constant "package.module:NAME" (e.g. a table of per-model
    defaults a help text names), read from the module's source without importing it."""
    module, _, name = target.partition(":")
    for node in _module_ast(module).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return _literal(node.value, target)
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == name and node.value is not None:
            return _literal(node.value, target)
    raise LookupError(f"{target}: no top-level constant {name!r}")


@functools.lru_cache(maxsize=None)
def _module_ast(module: str) -> ast.Module:
    with open(_module_file(module), encoding="utf-8") as fh:
        return ast.parse(fh.read(), str(_module_file(module)))


def _module_file(module: str) -> Path:
    """The source file of `module`, found without importing it or its parent packages
    (`importlib.util.find_spec` would run every parent's `__init__`, and so import the
    pipeline the CLI means to leave alone)."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"no package {top!r}")
    folder = Path(next(iter(spec.submodule_search_locations)))
    for part in rest[:-1]:
        folder = folder / part
    for candidate in (folder / f"{rest[-1]}.py", folder / rest[-1] / "__init__.py") if rest else (folder / "__init__.py",):
        if candidate.is_file():
            return candidate
    raise ModuleNotFoundError(f"no module {module!r}")


@functools.lru_cache(maxsize=None)
def _source_defaults(target: str) -> dict[str, ast.expr | None]:
    """{parameter: default expression or None} of a function or dataclass named
    "module:name", parsed from its module's source."""
    module, _, qualname = target.partition(":")
    node = next((n for n in _module_ast(module).body if getattr(n, "name", None) == qualname), None)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = node.args
        positional = args.posonlyargs + args.args
        defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        pairs = list(zip(positional, defaults)) + list(zip(args.kwonlyargs, args.kw_defaults))
    elif isinstance(node, ast.ClassDef):
        pairs = [(n.target, n.value) for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    else:
        raise LookupError(f"{target}: no top-level function or class {qualname!r}")
    return {_name(arg): value for arg, value in pairs}


def _name(node: ast.arg | ast.expr) -> str:
    return node.arg if isinstance(node, ast.arg) else node.id  # type: ignore[attr-defined]


def _literal(node: ast.expr, target: str) -> Any:
    if isinstance(node, ast.Name):  # a module constant, e.g. `metrics = METRICS`
        return library_value(f"{target.partition(':')[0]}:{node.id}")
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{target}: default {ast.unparse(node)!r} is not a literal; pass the object, "
                         "not its name, to dfpipe.cli.options.option") from None
