"""The one-way import order of DESIGN.md, checked on the source with `ast` (nothing is imported).

Every module under src/angiosynth belongs to a *unit*: a top-level package (angiosynth.dicom,
angiosynth.cli, ...), a top-level module (angiosynth.errors, angiosynth.__main__) or the package
itself (angiosynth, its __init__). Each unit has a layer rank in `LAYERS`, lowest first. A module
may import

* its own unit,
* any unit of a lower layer,
* a unit of its own layer only when the pair is listed in `SAME_LAYER_EDGES`.

Everything else is a violation: an import of a higher layer is a back-edge, an import between
`FORBIDDEN_PEERS` is never allowed, and any other import inside one layer must be listed first
(so the foundation stays acyclic). Imports are read at module level and inside functions,
classes, `if` and `try` blocks alike, both `import x` and `from x import y`, with relative
imports resolved.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "angiosynth"
PACKAGE_DIR = SRC / PACKAGE

FOUNDATION = 0

#: Layer rank of every unit, lowest first (DESIGN.md "Imports go one way").
LAYERS: dict[str, int] = {
    # foundation: imported by every layer; they import only each other (SAME_LAYER_EDGES)
    "angiosynth": FOUNDATION,  # the package __init__
    "angiosynth.errors": FOUNDATION,
    "angiosynth.config": FOUNDATION,
    "angiosynth.conditions": FOUNDATION,
    "angiosynth.runfiles": FOUNDATION,
    "angiosynth.progress": FOUNDATION,
    "angiosynth.runtime": FOUNDATION,  # device, precision, determinism (imports torch)
    "angiosynth.dicom": 1,
    "angiosynth.phantom": 2,
    "angiosynth.curation": 3,
    "angiosynth.data": 4,
    "angiosynth.models": 5,
    "angiosynth.diffusion": 6,
    "angiosynth.gan": 6,
    "angiosynth.training": 7,
    "angiosynth.evaluation": 7,
    "angiosynth.readerstudy": 8,
    "angiosynth.cli": 9,
    "angiosynth.__main__": 9,
}

#: The only allowed imports between two different units of one layer: (importer, imported).
#: Keep this acyclic; a new edge inside the foundation must be added here on purpose.
SAME_LAYER_EDGES: set[tuple[str, str]] = {
    ("angiosynth.config", "angiosynth.errors"),
    ("angiosynth.runtime", "angiosynth.errors"),
    ("angiosynth.__main__", "angiosynth.cli"),
}

#: Peers: units of one layer that must never import each other, in either direction.
FORBIDDEN_PEERS: set[frozenset[str]] = {
    frozenset({"angiosynth.diffusion", "angiosynth.gan"}),
    frozenset({"angiosynth.training", "angiosynth.evaluation"}),
}


@dataclass(frozen=True)
class Import:
    """One angiosynth module imported by one source line."""

    file: Path
    line: int
    importer: str  # dotted module name of the file
    imported: str  # dotted module name, resolved (relative imports made absolute)


def module_name(path: Path) -> str:
    """Dotted module name of a file under SRC: angiosynth/dicom/__init__.py -> angiosynth.dicom."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    """Every Python file of the package, in a stable order."""
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def known_modules() -> set[str]:
    """Dotted names of every module and package on disk."""
    return {module_name(p) for p in source_files()}


def unit_of(module: str) -> str:
    """The unit a dotted module name belongs to: "angiosynth.dicom.xa" -> "angiosynth.dicom"."""
    return ".".join(module.split(".")[:2])


def resolve_from(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """Absolute module named by a `from ... import` (the part before `import`)."""
    if node.level == 0:
        return node.module or ""
    parts = importer.split(".")
    if not is_package:
        parts = parts[:-1]  # a plain module's relative imports start from its package
    if node.level > 1:
        parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def parse_imports(
    code: str, importer: str, is_package: bool, modules: set[str]
) -> list[tuple[int, str]]:
    """(line, imported module) of every angiosynth import in `code`, wherever it appears.

    Args:
        code: Python source.
        importer: Dotted name of the module `code` belongs to.
        is_package: Whether `code` is a package's __init__ (relative imports start there).
        modules: Dotted names of the modules on disk, to tell `from pkg import module` from
            `from module import name`.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(importer, is_package, node)
            # `from angiosynth import errors` imports the module angiosynth.errors
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in dict.fromkeys(targets):
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                found.append((node.lineno, target))
    return sorted(found)


def imports_of(path: Path, modules: set[str]) -> list[Import]:
    """Every angiosynth import of one source file."""
    importer = module_name(path)
    code = path.read_text(encoding="utf-8")
    return [
        Import(path, line, importer, target)
        for line, target in parse_imports(code, importer, path.name == "__init__.py", modules)
    ]


def violation(imp: Import) -> str | None:
    """Why an import breaks the layering, or None when it is allowed."""
    source, target = unit_of(imp.importer), unit_of(imp.imported)
    if source == target:
        return None
    if source not in LAYERS:
        return f"{source} has no layer in LAYERS"
    if target not in LAYERS:
        return f"{target} has no layer in LAYERS"
    rank_source, rank_target = LAYERS[source], LAYERS[target]
    if rank_target < rank_source:
        return None
    if rank_target > rank_source:
        return f"back-edge: {source} (layer {rank_source}) imports {target} (layer {rank_target})"
    if frozenset({source, target}) in FORBIDDEN_PEERS:
        return f"peers {source} and {target} must never import each other"
    if (source, target) in SAME_LAYER_EDGES:
        return None
    return (
        f"{source} imports {target} of the same layer {rank_source}, "
        "which SAME_LAYER_EDGES does not allow"
    )


def all_imports() -> list[Import]:
    modules = known_modules()
    return [imp for path in source_files() for imp in imports_of(path, modules)]


def test_imports_follow_the_layer_order() -> None:
    problems = []
    for imp in all_imports():
        reason = violation(imp)
        if reason is not None:
            where = imp.file.relative_to(SRC.parent)
            problems.append(f"{where}:{imp.line}: {imp.importer} imports {imp.imported} — {reason}")

    assert not problems, f"{len(problems)} import(s) break the layer order:\n" + "\n".join(problems)


def test_every_top_level_package_has_a_layer() -> None:
    units = {PACKAGE}
    for entry in PACKAGE_DIR.iterdir():
        if entry.is_dir() and any(entry.rglob("*.py")) and entry.name != "__pycache__":
            units.add(f"{PACKAGE}.{entry.name}")
        elif entry.suffix == ".py" and entry.name != "__init__.py":
            units.add(f"{PACKAGE}.{entry.stem}")

    missing = sorted(units - LAYERS.keys())
    assert not missing, f"place these in tests/test_layers.py LAYERS: {', '.join(missing)}"


def test_rule_table_is_consistent() -> None:
    for pair in FORBIDDEN_PEERS:
        a, b = sorted(pair)
        assert LAYERS[a] == LAYERS[b], f"peers {a} and {b} must share a layer"
        assert (a, b) not in SAME_LAYER_EDGES and (b, a) not in SAME_LAYER_EDGES
    for source, target in SAME_LAYER_EDGES:
        assert LAYERS[source] == LAYERS[target], (source, target)
        assert (target, source) not in SAME_LAYER_EDGES, f"cycle {source} <-> {target}"


def test_parser_reads_every_kind_of_import() -> None:
    """Function-level, aliased, relative and `from package import module` imports are found."""
    code = (
        "import os\n"
        "import angiosynth.dicom.xa as xa\n"
        "from . import writing\n"
        "from ..phantom import dicom_writer\n"
        "from .. import errors, __version__\n"
        "def f():\n"
        "    from angiosynth.cli.main import app\n"
    )
    importer = "angiosynth.dicom.probe"
    modules = {"angiosynth.dicom.writing", "angiosynth.phantom.dicom_writer", "angiosynth.errors"}

    found = parse_imports(code, importer, is_package=False, modules=modules)

    assert found == [
        (2, "angiosynth.dicom.xa"),
        (3, "angiosynth.dicom.writing"),
        (4, "angiosynth.phantom.dicom_writer"),
        (5, "angiosynth"),
        (5, "angiosynth.errors"),
        (7, "angiosynth.cli.main"),
    ]
    allowed = [violation(Import(Path("probe.py"), n, importer, m)) is None for n, m in found]
    assert allowed == [True, True, False, True, True, False]
    in_package = parse_imports("from . import x", "angiosynth.cli", True, set())
    assert in_package == [(1, "angiosynth.cli")]
