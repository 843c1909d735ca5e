"""Where the repository's files are, for tests that read them (docs, deploy, config.yaml) or run
its scripts (`python -m bench.…` from the root)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
DOCS: Final = ROOT / "docs"
DEPLOY: Final = ROOT / "deploy"
EXAMPLE_CONFIG: Final = ROOT / "config.yaml"
