"""The README's code-layout table names every module of the package, and only those."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_layout_table_matches_the_tree() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("Code layout (") : text.index("## Configuration")]
    listed = set(re.findall(r"`(scaler/[\w/.]+)`", table.split("\n\n", 1)[1].split("\n\n", 1)[0]))
    package = ROOT / "scaler"
    tree = {f"scaler/{p.name}" for p in package.glob("*.py") if p.name != "__init__.py"} | {
        f"scaler/{p.name}/" for p in package.iterdir() if p.is_dir() and p.name != "__pycache__"
    }
    assert listed == tree, f"missing from the README: {sorted(tree - listed)}; not in the tree: {sorted(listed - tree)}"
