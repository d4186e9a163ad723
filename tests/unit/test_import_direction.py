"""The library never imports the service or the CLI: they depend on it, never the other way round.

Every module of `textguard/` outside `textguard/service/` and `textguard/cli/` is parsed (not imported)
and every import in it is checked: top-level, inside functions, under TYPE_CHECKING, relative imports
and `importlib.import_module("...")` with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import textguard

PACKAGE = Path(textguard.__file__).parent
TRANSPORTS = ("textguard.service", "textguard.cli")
#: `python -m` targets that only start the command line: transports by nature, whatever their folder.
ENTRY_POINTS = {
    "__main__.py": "python -m textguard (also what torchrun runs on each rank: -m textguard train)",
}


def _is_transport(name: str) -> bool:
    return name in TRANSPORTS or name.startswith(tuple(f"{transport}." for transport in TRANSPORTS))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_modules() -> list[Path]:
    return sorted(
        path
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in ("service", "cli")
        and path.relative_to(PACKAGE).as_posix() not in ENTRY_POINTS
    )


def imported_names(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.append((node.lineno, module))
            names += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.append((node.lineno, node.args[0].value))
    return names


def test_the_walk_sees_the_library_and_would_see_a_forbidden_import(tmp_path: Path) -> None:
    modules = {_module_name(path) for path in library_modules()}
    assert {"textguard.scorer", "textguard.audit", "textguard.moderation.moderator"} <= modules
    assert not any(name.startswith(TRANSPORTS) for name in modules)
    # The checker itself catches each form (a test that cannot fail proves nothing).
    probe = PACKAGE / "moderation" / "_probe_for_import_test.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "import importlib\n"
        "if TYPE_CHECKING:\n    from textguard.service.app import create_app\n"
        "def f():\n    from ..cli import app\n    importlib.import_module('textguard.service.audit')\n",
        encoding="utf-8",
    )
    try:
        found = [name for _, name in imported_names(probe) if _is_transport(name)]
    finally:
        probe.unlink()
    assert "textguard.service.app" in found and "textguard.cli" in found
    assert "textguard.service.audit" in found


@pytest.mark.parametrize("path", library_modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_library_module_imports_the_service_or_the_cli(path: Path) -> None:
    offending = [
        f"line {line}: {name}"
        for line, name in imported_names(path)
        if name == "textguard.service"
        or name == "textguard.cli"
        or name.startswith(("textguard.service.", "textguard.cli."))
    ]
    assert not offending, f"{path.relative_to(PACKAGE.parent)} imports the service/CLI: {offending}"


def test_entry_points_only_start_the_command_line() -> None:
    for relative in ENTRY_POINTS:
        source = (PACKAGE / relative).read_text(encoding="utf-8")
        tree = ast.parse(source)
        functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)]
        assert len(functions) <= 1 and len(source.splitlines()) < 40, f"{relative} grew beyond an entry point"
