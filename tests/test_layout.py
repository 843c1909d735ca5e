"""The package layout: a folder per plane, and no two modules with the same name (a newcomer
who reads `keys.py` in a traceback must know which one)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import gateway

PACKAGE = Path(gateway.__file__).parent
PLANES = {"edge", "proxy", "tokens", "authserver", "browser", "admin", "runtime", "store"}


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
    assert folders == PLANES
