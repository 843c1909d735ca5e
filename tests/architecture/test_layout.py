"""The package layout: a folder per plane, no two modules with the same name (a newcomer who
reads `keys.py` in a traceback must know which one), and dependencies that point one way:
a module imports at run time only from its own plane or from planes below it."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import gateway

PACKAGE = Path(gateway.__file__).parent
ARCHITECTURE = PACKAGE.parent / "docs" / "ARCHITECTURE.md"

# The plane order, top to bottom: each tier may import its own planes and every tier below,
# never one above; planes that share a tier do not import each other. A plane is a folder
# of gateway/ or one of its top-level modules. docs/ARCHITECTURE.md draws the same order.
PLANE_ORDER: tuple[frozenset[str], ...] = (
    frozenset({"cli"}),  # the commands
    frozenset({"runtime"}),  # the process: serving, workers, lifetimes; its wiring
    frozenset({"admin", "browser"}),
    frozenset({"authserver", "proxy"}),
    frozenset({"tokens", "policy"}),  # policy: authorization rules, pure logic
    frozenset({"edge", "store"}),
    frozenset({"observability", "outbound"}),
    frozenset({"config"}),
    frozenset({"errors", "typedefs", "safejson", "appkeys"}),  # appkeys: checker-only imports
)
# Top-level modules that belong to a plane: the process's wiring (services.py) and its two
# applications (app.py) sit at the top of the package to be found first.
MODULE_PLANES = {
    "__main__": "cli",
    "app": "runtime",
    "services": "runtime",
    "config_reference": "config",
}
PACKAGES = {"edge", "proxy", "tokens", "authserver", "browser", "admin", "runtime", "store"} | {
    "observability",
    "outbound",
    "config",
    "cli",
    "policy",
}


def tier_of(plane: str) -> int:
    for index, planes in enumerate(PLANE_ORDER):
        if plane in planes:
            return index
    raise AssertionError(f"{plane!r} is in no tier of PLANE_ORDER")


def plane_of(module: str) -> str:
    """`gateway.proxy.routing` → `proxy`; `gateway.errors` → `errors`."""
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return MODULE_PLANES.get(parts[1], parts[1])


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def run_time_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every gateway import outside `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text(), str(path))
    checker_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            checker_only.update(id(inner) for child in node.body for inner in ast.walk(child))
    found = []
    for node in ast.walk(tree):
        if id(node) in checker_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] == "gateway"]
    return found


def test_every_plane_has_a_tier() -> None:
    planes = {plane_of(module_name(p)) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    for plane in planes:
        tier_of(plane)


def test_imports_point_down_the_plane_order() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = plane_of(module_name(path))
        if importer == "__init__":
            continue
        for line, imported in run_time_imports(path):
            target = plane_of(imported)
            if target == importer or target == "__init__":
                continue
            if tier_of(target) <= tier_of(importer):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}")
    assert upward == []


def test_the_architecture_page_draws_the_same_order() -> None:
    """ARCHITECTURE.md lists the tiers in a block between `plane-order` markers, one line
    each, top first: `tier: plane plane …`."""
    text = ARCHITECTURE.read_text()
    block = re.search(r"<!-- plane-order -->\n```\n(.*?)```", text, re.S)
    assert block is not None, "ARCHITECTURE.md has no plane-order block"
    drawn = [
        frozenset(re.findall(r"[a-z_]+", line.split(":", 1)[1]))
        for line in block.group(1).strip().splitlines()
    ]
    assert tuple(drawn) == PLANE_ORDER


def module_paths() -> dict[str, list[str]]:
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in PACKAGE.rglob("*.py"):
        if path.name not in {"__init__.py", "__main__.py"}:
            by_name[path.stem].append(str(path.relative_to(PACKAGE)))
    return by_name


def test_no_two_modules_share_a_name() -> None:
    twins = {name: paths for name, paths in module_paths().items() if len(paths) > 1}
    assert twins == {}


def test_the_top_level_packages_are_the_planes() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == PACKAGES
