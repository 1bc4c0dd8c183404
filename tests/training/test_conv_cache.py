"""--conv auto's verdicts kept per machine: read back only for the machine (CPU, torch, threads) that measured them,
merged with what other runs kept, and never trusted from a file that is not a table of verdicts."""

import json

from gaussdiff.training.conv_cache import keep_verdicts, load_verdicts, machine_key, table_path

MACHINE = {"cpu": "Some CPU", "family": "family 6 model 1", "flags": "0123", "torch": "2.13.0", "threads": 2}


def test_verdicts_round_trip_and_merge_with_what_other_runs_kept(tmp_path):
    assert load_verdicts(tmp_path, MACHINE) == {}  # no table yet
    a, b, c = (f"64->{k} [2, 64, 8, 8] float32 contiguous" for k in (64, 128, 256))
    keep_verdicts(tmp_path, {a: True, b: True}, MACHINE)  # an earlier run's
    path = keep_verdicts(tmp_path, {b: False, c: False}, MACHINE)  # ours replace b; a stays
    assert load_verdicts(tmp_path, MACHINE) == {a: True, b: False, c: False}
    assert path == table_path(tmp_path, MACHINE) and json.loads(path.read_text())["machine"] == MACHINE


def test_another_machine_torch_or_thread_count_measures_afresh(tmp_path):
    keep_verdicts(tmp_path, {"k": True}, MACHINE)
    for change in ({"threads": 4}, {"torch": "2.14.1"}, {"flags": "4567"}, {"cpu": "Other CPU"}):
        assert load_verdicts(tmp_path, {**MACHINE, **change}) == {}
    # A table found under this machine's name but written for another is not taken either.
    other = {**MACHINE, "threads": 4}
    table_path(tmp_path, MACHINE).write_text(json.dumps({"machine": other, "verdicts": {"k": True}}))
    assert load_verdicts(tmp_path, MACHINE) == {}


def test_a_file_that_is_not_a_table_of_verdicts_is_ignored_and_replaced(tmp_path):
    path = table_path(tmp_path, MACHINE)
    for text in ("", "{not json", "[1, 2]", json.dumps({"machine": MACHINE, "verdicts": {"k": "yes"}}),
                 json.dumps({"machine": MACHINE, "verdicts": [1]})):
        path.write_text(text)
        assert load_verdicts(tmp_path, MACHINE) == {}
    keep_verdicts(tmp_path, {"k": True}, MACHINE)
    assert load_verdicts(tmp_path, MACHINE) == {"k": True}


def test_the_machine_key_names_this_host_and_its_threads():
    import torch

    key = machine_key()
    assert key["torch"] == torch.__version__ and key["threads"] == torch.get_num_threads()
    assert isinstance(key["cpu"], str) and key["cpu"] and len(key["flags"]) == 16


def test_an_arm_cpu_is_named_by_its_implementer_part_and_features(monkeypatch):
    """Arm's /proc/cpuinfo has no model name or flags: the core's implementer and part, and its Features, tell two
    Arm machines apart, so that they never share a table."""
    import builtins
    import io

    from gaussdiff.nets.fast import cpu_info

    text = ("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve bf16\nCPU implementer\t: 0x41\n"
            "CPU part\t: 0xd4f\n")
    real = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: io.StringIO(text) if path == "/proc/cpuinfo"
                        else real(path, *a, **k))
    info = cpu_info()
    assert info.family == "implementer 0x41 part 0xd4f" and info.flags == {"fp", "asimd", "sve", "bf16"}
