"""Write a benchmark's table into a page (docs/*.md) between ``<!-- NAME -->`` and ``<!-- /NAME -->`` markers."""

from __future__ import annotations

import re
from pathlib import Path


def check_page(page: Path | None) -> None:
    """Before a benchmark measures: the page it will write to exists and is writable, so that minutes of
    measuring do not end in an error with the table unwritten."""
    if page is None:
        return
    if not page.is_file():
        raise SystemExit(f"--doc {page}: no such page")
    try:
        with page.open("r+"):
            pass
    except OSError as e:
        raise SystemExit(f"--doc {page}: cannot be written ({e.strerror})") from None


def write_table(page: Path, name: str, table: str, heading: str | None = None) -> None:
    """Replace the table between ``name``'s markers. A page without them (a host family or setup measured for the
    first time) gains a section ``## heading`` at its end holding the table between new markers, which the next
    run of the same kind replaces; without a ``heading`` missing markers are an error."""
    text = page.read_text()
    block = f"<!-- {name} -->\n{table}\n<!-- /{name} -->"
    text, count = re.subn(rf"<!-- {re.escape(name)} -->.*?<!-- /{re.escape(name)} -->", lambda _: block, text,
                          flags=re.S)
    if count == 0:
        if heading is None:
            raise SystemExit(f"{page}: no {name} markers")
        text = f"{text.rstrip()}\n\n## {heading}\n\n{block}\n"
        print(f"{page}: a new section '{heading}' at its end holds the table")
    page.write_text(text)
