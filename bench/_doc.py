"""Write a benchmark's table into a page (docs/*.md) between ``<!-- NAME -->`` and ``<!-- /NAME -->`` markers."""

from __future__ import annotations

import re
from pathlib import Path


def write_table(page: Path, name: str, table: str) -> None:
    text = page.read_text()
    block = f"<!-- {name} -->\n{table}\n<!-- /{name} -->"
    text, count = re.subn(rf"<!-- {name} -->.*?<!-- /{name} -->", lambda _: block, text, flags=re.S)
    if count == 0:
        raise SystemExit(f"{page}: no {name} markers")
    page.write_text(text)
