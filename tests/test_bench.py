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
    ("sample_speed", ["--batch", "2", "--steps", "2", "--repeats", "1", "--no-compile"], "gaussdiff, default"),
])
def test_speed_benchmarks_run_one_tiny_round(script, args, row, tmp_path, monkeypatch, capsys):
    """One round of the speed benchmarks end to end (their tables name the host), so that API drift fails here;
    --doc on a page without this host's markers gains a section holding the table."""
    pytest.importorskip("diffusers")
    page = tmp_path / "speed.md"
    page.write_text("# Speed\n")
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{script}_run", BENCH / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", [script, *args, "--doc", str(page)])
    module.main()
    out = capsys.readouterr().out
    assert "torch " in out and "threads" in out  # the host, beside the figures
    assert row in out
    written = page.read_text()
    assert written.startswith("# Speed\n\n## ") and f"<!-- {script.replace('_', '-')}-" in written
    assert row in written and "threads" in written


def test_write_table_replaces_between_markers_or_adds_a_section(tmp_path):
    """A table replaces only what lies between its own markers; a page without them gains one section at its end,
    which the next write replaces in place rather than adding another; without a heading that is an error, and a
    missing page is refused before any measuring."""
    sys.path.insert(0, str(BENCH))
    try:
        from _doc import check_page, write_table
    finally:
        sys.path.remove(str(BENCH))
    page = tmp_path / "speed.md"
    page.write_text("intro\n<!-- a -->\nold a\n<!-- /a -->\nbetween\n<!-- b -->\nold b\n<!-- /b -->\n")
    write_table(page, "a", "new a")
    assert page.read_text() == "intro\n<!-- a -->\nnew a\n<!-- /a -->\nbetween\n<!-- b -->\nold b\n<!-- /b -->\n"
    write_table(page, "c+1", "first c", heading="C hosts")
    write_table(page, "c+1", "second c", heading="C hosts")
    text = page.read_text()
    assert text.count("## C hosts") == 1 and "first c" not in text
    assert text.endswith("old b\n<!-- /b -->\n\n## C hosts\n\n<!-- c+1 -->\nsecond c\n<!-- /c+1 -->\n")
    with pytest.raises(SystemExit, match="no d markers"):
        write_table(page, "d", "table")
    with pytest.raises(SystemExit, match="no such page"):
        check_page(tmp_path / "missing.md")
    check_page(page)


def test_fewstep_fid_runs_one_tiny_round(tmp_path, monkeypatch, capsys):
    """bench/fewstep_fid.py end to end on a 4-step run: a gaussdiff row, a tuned row and a diffusers row at one
    budget, each scored by FID (the domain classifier trains 30 steps into a temporary cache here); the table
    names the host and the json holds every row."""
    pytest.importorskip("diffusers")
    import functools
    import json
    import math

    import gaussdiff.evaluation.features as features
    from conftest import tiny_config
    from gaussdiff.training import Trainer

    run = tmp_path / "run"
    Trainer(tiny_config(), run, progress=False).run()
    briefly = functools.partial(features.train_domain_classifier, steps=30)
    monkeypatch.setattr(features, "train_domain_classifier", briefly)
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_fewstep_fid_run", BENCH / "fewstep_fid.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    cached = functools.partial(module.evaluate_quality, cache_dir=tmp_path / "cache")
    monkeypatch.setattr(module, "evaluate_quality", cached)
    rows = ["gaussdiff UniPC", "gaussdiff UniPC tuned", "diffusers UniPC clipped"]
    monkeypatch.setattr(sys, "argv", ["fewstep_fid", "--run", str(run), "--n", "12", "--nfe", "5", "--tune-evals", "3",
                                      "--out", str(tmp_path / "out"), "--rows", *rows])
    module.main()
    out = capsys.readouterr().out
    assert "torch " in out and "threads" in out
    saved = json.loads((tmp_path / "out" / "fewstep-fid-digits.json").read_text())
    assert list(saved["results"]) == rows and all(math.isfinite(row["5"]) for row in saved["results"].values())
    assert set(saved["tuning_s"]) == {"gaussdiff UniPC tuned"} and "threads" in saved["host"]
    assert (tmp_path / "out" / "fewstep-fid-digits.png").stat().st_size > 0
    # Interrupted in diffusers' rows (Ctrl-C is not an error the script skips), the finished rows stay written.
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "run_diffusers", interrupt)
    monkeypatch.setattr(sys, "argv", ["fewstep_fid", "--run", str(run), "--n", "12", "--nfe", "8", "--out",
                                      str(tmp_path / "cut"), "--rows", "gaussdiff DDIM", "diffusers UniPC clipped"])
    with pytest.raises(KeyboardInterrupt):
        module.main()
    kept = json.loads((tmp_path / "cut" / "fewstep-fid-digits.json").read_text())["results"]
    assert list(kept) == ["gaussdiff DDIM"] and math.isfinite(kept["gaussdiff DDIM"]["8"])
