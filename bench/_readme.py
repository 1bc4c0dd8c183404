"""Write a benchmark's table into the README between ``<!-- NAME -->`` and ``<!-- /NAME -->`` markers."""

from __future__ import annotations

import re
from pathlib import Path


def write_table(readme: Path, name: str, table: str) -> None:
    text = readme.read_text()
    block = f"<!-- {name} -->\n{table}\n<!-- /{name} -->"
    text, count = re.subn(rf"<!-- {name} -->.*?<!-- /{name} -->", lambda _: block, text, flags=re.S)
    if count == 0:
        raise SystemExit(f"{readme}: no {name} markers")
    readme.write_text(text)
