"""The layering stays true because tests say so: a core without I/O or scheduling, a
command line that only parses, no function with a long parameter list."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gmmcli"
MAX_PARAMETERS = 8


def _functions(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_the_core_schedules_nothing_and_reads_no_environment():
    """No pools, processes or forks and no environment: the reducer a caller gives runs the
    passes. (em.py keeps a per-thread scratch array: threading.local, no thread started.)"""
    code = (
        "import sys, gmmcli.core, gmmcli.core.select; "
        "bad = ('multiprocessing', 'concurrent.futures', 'pyarrow', 'typer', 'rich', 'sklearn'); "
        "print(','.join(m for m in bad if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    for path in (PACKAGE / "core").glob("*.py"):
        text = path.read_text()
        for word in ("import os", "environ", "getenv", "Thread(", "Executor", "fork"):
            assert word not in text, (path.name, word)


def test_no_function_takes_more_than_eight_parameters():
    """Typer command declarations excepted: their parameters are the flags."""
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in _functions(path):
            commands = path.name == "cli.py" and any(
                isinstance(d, ast.Call) and getattr(d.func, "id", "") == "command"
                for d in node.decorator_list
            )
            args = node.args
            count = len(args.posonlyargs + args.args + args.kwonlyargs)
            count -= bool(args.args) and args.args[0].arg in ("self", "cls")
            if count > MAX_PARAMETERS and not commands:
                long.append(f"{path.name}:{node.name} ({count})")
    assert long == []


def test_no_option_dict_is_built_to_be_spread_into_a_call():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        built = {
            target.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", "") == "dict"
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        spread = {
            keyword.value.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            for keyword in node.keywords
            if keyword.arg is None and isinstance(keyword.value, ast.Name)
        }
        assert built & spread == set(), path.name


def test_the_command_line_only_parses():
    cli = PACKAGE / "cli.py"
    assert len(cli.read_text().splitlines()) <= 600
    imported = set()
    for node in ast.walk(ast.parse(cli.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    allowed = {"__future__", "functools", "json", "os", "sys", "typing", "enum"}
    assert imported - allowed <= {"typer", "gmmcli"}
    assert not any(
        isinstance(node, ast.ImportFrom) and node.module.startswith(("gmmcli.engines", "gmmcli.io"))
        for node in ast.walk(ast.parse(cli.read_text()))
    )
