"""The package's layers: imports point one way, ``data`` <- ``models``, ``curriculum``, ``evaluation`` <- ``trainer``
<- ``recipe``, ``cli``, ``search``; nothing but the CLI imports ``cli``; no module imports another's private names.

Every module of ``class_hf`` is parsed (``ast``, nothing is imported) and each of its imports of another ``class_hf``
module is checked against the layer of both. Imports under ``if TYPE_CHECKING:`` are for type annotations only and
are not counted. ``class_hf/__init__.py`` (the public API, re-exporting every layer) is the one exception.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "class_hf"

# Layer of each top-level part of the package; a module may import its own layer and the layers below.
LAYERS: dict[str, int] = {
    "_lazy": 0,  # package plumbing: lazy exports, CPU threads, user-error reporting (import nothing of class_hf)
    "runtime": 0,
    "user_errors": 0,
    "log_output": 0,  # the Trainer's readable log lines (imports transformers only)
    "data": 0,
    "models": 1,
    "curriculum": 1,
    "evaluation": 1,
    "training_args": 2,
    "optimization": 2,
    "trainer": 2,
    "model_card": 2,
    "hub": 2,
    "recipe": 3,
    "search": 3,
    "cli": 4,
}
LOW_PARTS = ("data", "evaluation", "models", "curriculum")
FORBIDDEN_FOR_LOW_PARTS = ("trainer", "recipe", "cli", "search")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(imported module, imported names, line)`` of every ``class_hf`` import outside ``if TYPE_CHECKING:``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, [], child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                names = [alias.name for alias in child.names]
                if not child.module:  # `from . import x`: each name may be a module
                    found.extend((f"{target}.{name}", [], child.lineno) for name in names)
                else:
                    found.append((target, names, child.lineno))
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return [(target, names, line) for target, names, line in found if target.split(".")[0] == "class_hf"]


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


def test_every_part_of_the_package_has_a_layer():
    parts = {_part(_module_name(path)) for path in MODULES}
    assert parts <= set(LAYERS), f"give {sorted(parts - set(LAYERS))} a layer in LAYERS"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_and_never_at_private_names(path):
    source = _part(_module_name(path))
    problems = []
    for target, names, line in _imports(path):
        part = _part(target)
        where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        if part is None or part == source:
            if part == source:
                continue
            problems.append(f"{where}: import the module that defines the names, not the package")
            continue
        if part == "cli":
            problems.append(f"{where}: nothing but the CLI imports `cli`")
        elif LAYERS[part] > LAYERS[source]:
            problems.append(f"{where}: `{source}` (layer {LAYERS[source]}) imports upward `{part}` ({LAYERS[part]})")
        if source in LOW_PARTS and part in FORBIDDEN_FOR_LOW_PARTS:
            problems.append(f"{where}: `{source}` must not import `{part}`")
        private = [name for name in names if name.startswith("_") and not name.startswith("__")]
        if private:
            problems.append(f"{where}: private name(s) {private} of another module; make them public")
    assert not problems, "\n".join(problems)


def test_the_checker_sees_relative_imports_and_skips_type_checking_blocks():
    """The import parser itself: relative levels resolve, ``TYPE_CHECKING`` blocks are skipped."""
    module = PACKAGE / "curriculum" / "callback.py"
    targets = {target for target, _, _ in _imports(module)}
    assert "class_hf.trainer" not in targets  # imported under TYPE_CHECKING only
    targets = {target for target, _, _ in _imports(PACKAGE / "recipe" / "run.py")}
    assert {"class_hf.recipe.outputs", "class_hf.data.features", "class_hf.models.registry"} <= targets
