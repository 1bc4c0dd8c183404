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


@pytest.mark.parametrize("script, args, row", [
    ("train_speed", ["--batch", "2", "--repeats", "1", "--iters", "1", "--conv", "direct", "auto"], "direct"),
    ("conv_speed", ["--repeats", "1", "--layers", "1"], "direct"),
    ("sample_speed", ["--batch", "2", "--steps", "2", "--repeats", "1"], "gaussdiff, default"),
])
def test_speed_benchmarks_run_one_tiny_round(script, args, row, monkeypatch, capsys):
    """One round of the speed benchmarks end to end (their tables name the host), so that API drift fails here."""
    pytest.importorskip("diffusers")
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{script}_run", BENCH / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [script, *args])
    module.main()
    out = capsys.readouterr().out
    assert "torch " in out and "threads" in out  # the host, beside the figures
    assert row in out
