"""Rewrite README.md's configuration table from the settings' declarations (scaler/config.py).

make settings-table        (tests/unit/test_config.py fails while the README differs)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from scaler import config

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- settings-table: begin.*?-->\n)(.*?)(<!-- settings-table: end -->)", re.S)


def main() -> int:
    text = README.read_text(encoding="utf-8")
    if not BLOCK.search(text):
        print("README.md lacks the '<!-- settings-table: begin -->' / 'end' markers", file=sys.stderr)
        return 1
    updated = BLOCK.sub(lambda m: m.group(1) + config.markdown_table() + m.group(3), text)
    if updated != text:
        README.write_text(updated, encoding="utf-8")
        print("README.md: configuration table rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
