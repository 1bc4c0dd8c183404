"""The benchmark scripts under bench/ still match the library's API.

They run outside the test suite (minutes, and diffusers), so an API change would otherwise only
surface when someone runs them: importing each one resolves every name it takes from gaussdiff.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize("path", sorted(BENCH.glob("[!_]*.py")), ids=lambda p: p.stem)
def test_bench_script_imports(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    assert callable(module.main)
