"""The examples that run on this machine, run as a user would: ``python examples/NAME.py`` in a fresh folder."""

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


def run_example(name, tmp_path, *args, timeout=240):
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_quickstart(tmp_path, no_leftover_workers):
    out = run_example("quickstart.py", tmp_path).stdout
    assert "squares: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in out
    assert "ValueError: this error was raised on the worker" in out


def test_autolabel_on_a_mixed_workload(tmp_path, no_leftover_workers):
    out = run_example("autolabel_mixed.py", tmp_path).stdout
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("light", "heavy"))}
    assert lines["light"][1] == "8" and lines["heavy"][1] == "4", out        # tasks per category
    assert "the last heavy app used" in out


def test_workers_by_hand_with_the_password(tmp_path, no_leftover_workers):
    out = run_example("workers_by_hand.py", tmp_path, "--start-worker").stdout
    assert "starting: PWQ_WORKDIR=$(mktemp -d" in out and "work_queue_worker --workdir \"$PWQ_WORKDIR\" --password " in out
    assert "results: [0, 1, 4, 9, 16]" in out


def test_factory(tmp_path, no_leftover_workers):
    out = run_example("factory.py", tmp_path).stdout
    assert "cubes: [0, 1, 8, 27, 64, 125, 216, 343, 512, 729]" in out


def test_packed(tmp_path, no_leftover_workers, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))     # a build of its own
    out = run_example("packed.py", tmp_path, timeout=600).stdout
    assert "sorted [1, 2, 3] in " in out and "/pwq-envs/" in out


def test_an_analysis_in_the_coffea_style(tmp_path, no_leftover_workers):
    done = run_example("coffea_style.py", tmp_path, "--chunks", "40", "--events", "2000")
    assert "events selected from 40 chunks; the peak bin is 90-95" in done.stdout, done.stdout


@pytest.mark.parametrize("name", ["slurm.py"])
def test_examples_for_elsewhere_at_least_parse(name):
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), "--help"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage:")
