"""The CLI mirrors the library (lhotse's habit): every command is a function in dfpipe/cli
whose body imports one library function under the command function's own name and calls
it, passing each of its parameters by the same name, and whose defaults are the library's.
A dataset stage takes a config dataclass (`config: ExtractConfig`): the command's options
are then that dataclass's fields, passed by name to the one call that builds it.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import textwrap
import typing

import pytest
from typer.testing import CliRunner

from dfpipe.cli.main import app

#: parameters that only shape what the command prints or shows (a report written from the
#: tables the stage wrote); the library function need not know them
PRESENTATION = {"progress", "json_output", "verbose", "report", "open_page"}

COMMANDS = {command.name or command.callback.__name__: command.callback for command in app.registered_commands}


def _library_call(fn) -> tuple[object, ast.Call]:
    """The library function `fn`'s body imports under `fn`'s name, and the one call to it."""
    body = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    imports = [(node.module, alias) for node in ast.walk(body) if isinstance(node, ast.ImportFrom)
               for alias in node.names if (alias.asname or alias.name) == fn.__name__]
    assert len(imports) == 1, f"{fn.__name__} imports no library function named {fn.__name__}"
    (module, alias), = imports
    assert alias.name == fn.__name__, f"{fn.__name__} calls {module}.{alias.name}, another name"
    calls = [node for node in ast.walk(body)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == fn.__name__]
    assert len(calls) == 1, f"{fn.__name__} calls {module}.{fn.__name__} {len(calls)} times"
    return getattr(importlib.import_module(module), fn.__name__), calls[0]


def _config_class(library) -> type | None:
    """The dataclass of the library function's `config` parameter, if it has one."""
    hint = typing.get_type_hints(library).get("config")
    for candidate in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(candidate):
            return candidate
    return None


def _passed(call: ast.Call, positional: list[str]) -> dict[str, ast.expr]:
    passed = {positional[i]: arg for i, arg in enumerate(call.args)}
    passed.update({kw.arg: kw.value for kw in call.keywords})
    for name, value in passed.items():
        assert isinstance(value, ast.Name) and value.id == name, f"{name} is passed {ast.unparse(value)}, not {name}"
    return passed


def _same_default(cli, lib) -> bool:
    """Equal, or the same sequence as a list (a repeatable option) or comma-joined (--metrics)."""
    if isinstance(lib, tuple) and isinstance(cli, (list, str)):
        return cli == list(lib) or cli == ",".join(lib)
    return cli == lib


def _check_mirror(fn) -> None:
    library, call = _library_call(fn)
    cli_params = inspect.signature(fn).parameters
    lib_params = inspect.signature(library).parameters
    config_cls = _config_class(library)
    fields = {f.name: f for f in dataclasses.fields(config_cls)} if config_cls else {}
    missing = set(cli_params) - PRESENTATION - set(lib_params) - set(fields)
    assert not missing, f"{library.__module__}.{library.__name__} has no parameter(s) {sorted(missing)}"
    positional = [name for name, p in lib_params.items() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    passed = _passed(call, positional)
    unpassed = set(cli_params) & set(lib_params) - set(passed)
    assert not unpassed, f"{fn.__name__} does not pass {sorted(unpassed)} on"
    defaults = {name: lib_params[name].default for name in set(cli_params) & set(lib_params)}
    as_fields = (set(cli_params) & set(fields)) - set(lib_params)
    if as_fields:
        body = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
        builds = [node for node in ast.walk(body) if isinstance(node, ast.Call)
                  and isinstance(node.func, ast.Name) and node.func.id == config_cls.__name__]
        assert len(builds) == 1, f"{fn.__name__} builds {config_cls.__name__} {len(builds)} times"
        given = _passed(builds[0], [])
        unpassed = as_fields - set(given)
        assert not unpassed, f"{fn.__name__} does not pass {sorted(unpassed)} to {config_cls.__name__}"
        for name in as_fields:
            f = fields[name]
            defaults[name] = f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty
    for name, lib_default in defaults.items():
        cli_default = cli_params[name].default.default  # typer's OptionInfo / ArgumentInfo
        lib_default = ... if lib_default is inspect.Parameter.empty else lib_default
        assert _same_default(cli_default, lib_default), f"--{name}: CLI default {cli_default!r}, library {lib_default!r}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_calls_the_library_function_of_its_name(name: str) -> None:
    _check_mirror(COMMANDS[name])


def test_every_command_is_checked() -> None:
    assert {"extract", "masks", "synthesize", "score-quality", "ingest", "train", "evaluate", "predict",
            "train-harmonizer", "info", "validate", "show"} <= set(COMMANDS)


def test_train_refuses_a_model_that_is_no_detector(tmp_path) -> None:
    result = CliRunner().invoke(app, ["train", str(tmp_path), "--model", "dovenet", "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "dovenet" in result.output and "m2tr" in result.output and "mat" in result.output
    assert "retinaface" not in result.output
