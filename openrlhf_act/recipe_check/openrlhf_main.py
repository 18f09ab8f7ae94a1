"""OpenRLHF's own argument handling: a CLI module's ``if __name__ == "__main__":`` block runs from the
installed source with a stand-in ``train`` and inert non-stdlib imports, so the installed version's
parser and asserts judge the arguments and nothing can start."""

from __future__ import annotations

import argparse
import ast
import builtins
import importlib.util
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from openrlhf_act.recipe_check.dry_run import option

# OpenRLHF modules its main blocks import that are pure (stdlib only), so they run for real.
_PURE_OPENRLHF_MODULES = frozenset({"openrlhf.utils.config"})


class _ParseError(Exception):
    """argparse wanted to print an error and exit."""


class _Inert:
    """Stands in for every non-stdlib module the main block imports: any use does nothing."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str) -> _Inert:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _Inert(f"{self._name}.{attr}")

    def __call__(self, *args: Any, **kwargs: Any) -> _Inert:
        return _Inert(f"{self._name}()")

    def __repr__(self) -> str:
        return f"<inert {self._name}>"


def openrlhf_root() -> Path | None:
    """The installed ``openrlhf`` package folder, found without importing anything."""
    spec = importlib.util.find_spec("openrlhf")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def installed_openrlhf_version() -> str | None:
    try:
        return metadata.version("openrlhf")
    except metadata.PackageNotFoundError:
        return None


@cache
def _pure_module(name: str) -> types.ModuleType:
    root = openrlhf_root()
    if root is None:
        raise ImportError(name)
    path = root.joinpath(*name.split(".")[1:]).with_suffix(".py")
    spec = importlib.util.spec_from_file_location(f"_openrlhf_act_check.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class MainRun:
    """What OpenRLHF's main block made of one argument list."""

    argv: list[str]
    unknown: list[str] = field(default_factory=list)
    abbreviated: list[tuple[str, str]] = field(default_factory=list)
    stray: list[tuple[str, str]] = field(default_factory=list)  # (flag, value it takes none of)
    error: str | None = None
    failed_assert: str | None = None
    exception: str | None = None
    printed: list[str] = field(default_factory=list)
    skipped_imports: list[str] = field(default_factory=list)
    options: dict[str, argparse.Action] = field(default_factory=dict, repr=False)
    args: Any = field(default=None, repr=False)


def _is_flag(token: str, parser: argparse.ArgumentParser) -> bool:
    if not token.startswith("-") or token in ("-", "--"):
        return False
    return token.startswith("--") or not parser._negative_number_matcher.match(token)


def _prescan(parser: argparse.ArgumentParser, argv: list[str], run: MainRun) -> list[str]:
    """Record unknown flags (and drop them with their values) so the rest is still judged in one go."""
    options = parser._option_string_actions
    run.options = dict(options)
    kept: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if not _is_flag(token, parser):
            kept.append(token)
            i += 1
            continue
        name, value = option(token)
        action = options.get(name)
        if action is None and name.startswith("--"):
            matches = [o for o in options if o.startswith(name)]
            if len(matches) == 1:
                run.abbreviated.append((name, matches[0]))
                action = options[matches[0]]
            elif len(matches) > 1:
                kept.append(token)  # argparse reports the ambiguity
                i += 1
                continue
        i += 1
        if action is None:
            run.unknown.append(name)
            while value is None and i < len(argv) and not _is_flag(argv[i], parser):
                i += 1
            continue
        kept.append(token)
        if action.nargs == 0 and value is None and i < len(argv) and not _is_flag(argv[i], parser):
            run.stray.append((name, argv[i]))
            i += 1
    return kept


class OpenRLHFMain:
    """An OpenRLHF CLI module's ``__main__`` block, compiled from the installed source."""

    def __init__(self, module: str):
        root = openrlhf_root()
        if root is None:
            raise LookupError("OpenRLHF is not installed")
        path = root.joinpath(*module.split(".")[1:]).with_suffix(".py")
        if not module.startswith("openrlhf.") or not path.is_file():
            raise LookupError(f"the installed OpenRLHF has no module {module}")
        self.module = module
        self.path = path
        tree = ast.parse(path.read_text(), filename=str(path))
        setup: list[ast.stmt] = []
        main: list[ast.stmt] | None = None
        for node in tree.body:
            if _is_main_guard(node):
                main = node.body
            elif isinstance(
                node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
            ):
                setup.append(node)
        if main is None:
            raise LookupError(f'{path} has no `if __name__ == "__main__":` block')
        self.setup = [compile(ast.Module(body=[n], type_ignores=[]), str(path), "exec") for n in setup]
        self.main = compile(ast.Module(body=main, type_ignores=[]), str(path), "exec")
        self.driver_env_keys = _ray_init_env_keys(tree)

    def run(self, argv: Sequence[str]) -> MainRun:
        run = MainRun(list(argv))
        namespace: dict[str, Any] = {"__name__": "__openrlhf_act_check__", "__file__": str(self.path)}
        namespace["__builtins__"] = self._builtins(run, namespace)
        for code in self.setup:
            try:
                exec(code, namespace)
            except Exception:  # a definition that needs a real heavy import: the main block rarely does
                continue
        namespace["train"] = lambda args: setattr(run, "args", args)
        namespace["argparse"] = _checking_argparse(run)
        namespace["__name__"] = "__main__"
        try:
            exec(self.main, namespace)
        except _ParseError as exc:
            run.error = str(exc)
        except AssertionError as exc:
            run.failed_assert = str(exc) or f"assert at {self.path.name}:{_error_line(exc, self.path)}"
        except SystemExit as exc:
            run.exception = f"the main block exited ({exc.code})"
        except Exception as exc:
            run.exception = f"{type(exc).__name__}: {exc} ({self.path.name}:{_error_line(exc, self.path)})"
        return run

    def _builtins(self, run: MainRun, namespace: dict[str, Any]) -> dict[str, Any]:
        real_import = builtins.__import__

        def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
            if level == 0 and name.split(".")[0] in sys.stdlib_module_names:
                return real_import(name, globals, locals, fromlist, level)
            if level == 0 and name in _PURE_OPENRLHF_MODULES and fromlist:
                return _pure_module(name)
            if namespace.get("__name__") == "__main__":
                run.skipped_imports.append(name)
            return _Inert(name)

        def recorded_print(*values: Any, sep: str | None = " ", end: str | None = "\n", **_: Any) -> None:
            run.printed.append((sep or " ").join(str(v) for v in values))

        table = dict(vars(builtins))
        table.update(__import__=guarded_import, print=recorded_print, exit=_refuse_exit, quit=_refuse_exit)
        return table


def _refuse_exit(*_: Any) -> None:
    raise SystemExit("exit() called")


def _checking_argparse(run: MainRun) -> types.ModuleType:
    """``argparse`` whose parser reads our argv, records unknown flags, and raises instead of exiting."""

    class CheckingParser(argparse.ArgumentParser):
        def parse_args(self, args=None, namespace=None):
            if args is None:
                args = _prescan(self, run.argv, run)
            return super().parse_args(args, namespace)

        def parse_known_args(self, args=None, namespace=None):
            return super().parse_known_args(run.argv if args is None else args, namespace)

        def error(self, message):
            raise _ParseError(message)

        def _print_message(self, message, file=None):
            return None  # --help / usage text: nothing is printed while checking

        def exit(self, status=0, message=None):
            if status == 0:
                raise _ParseError("--help makes it print its usage and exit without training")
            raise _ParseError((message or "").strip() or f"argparse exited with status {status}")

    module = types.ModuleType("argparse")
    module.__dict__.update(vars(argparse))
    module.ArgumentParser = CheckingParser
    return module


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    parts = [node.test.left, *node.test.comparators]
    names = {p.id for p in parts if isinstance(p, ast.Name)}
    consts = {p.value for p in parts if isinstance(p, ast.Constant)}
    return names == {"__name__"} and consts == {"__main__"}


def _ray_init_env_keys(tree: ast.Module) -> frozenset[str]:
    """Environment variables the module's own ``ray.init(runtime_env={"env_vars": {...}})`` sets:
    Ray refuses a job runtime env that sets any of them again."""
    keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "init":
            for keyword in node.keywords:
                if keyword.arg == "runtime_env" and isinstance(keyword.value, ast.Dict):
                    for key, value in zip(keyword.value.keys, keyword.value.values):
                        if isinstance(key, ast.Constant) and key.value == "env_vars" and isinstance(value, ast.Dict):
                            keys.update(k.value for k in value.keys if isinstance(k, ast.Constant))
    return frozenset(keys)


def _error_line(exc: BaseException, path: Path) -> int | str:
    tb = exc.__traceback__
    line: int | str = "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(path):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@cache
def openrlhf_main(module: str) -> OpenRLHFMain:
    return OpenRLHFMain(module)
