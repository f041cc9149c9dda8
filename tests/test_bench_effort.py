"""benchmarks/bench_effort.py: the static count, and the simulated user end to end on a small
labelled folder drawn here (the benchmark must run on any folder of that shape)."""
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_labelled

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from bench_effort import is_clean, static_fixes  # noqa: E402


def test_static_fixes_count_merges_and_moves():
    truth = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B", "c1": "C"}
    where = {"a1": {"x"}, "a2": {"x"}, "a3": {"y"}, "b1": {"x"}, "b2": {"z"}, "c1": {"unsorted"}}
    fixes = static_fixes(where, truth)
    # x and y belong to A (one merge); b1 in A's folder and c1 unsorted are moves; b2's folder is B's
    assert (fixes["merges"], fixes["moves"], fixes["largest"], fixes["largest_characters"]) == (1, 2, 3, 1)
    assert not is_clean(where, truth)
    assert is_clean({"a1": {"x"}, "a2": {"x"}, "b1": {"y"}}, {"a1": "A", "a2": "A", "b1": "B"})
    assert not is_clean({"a1": {"x"}, "b1": {"x"}}, {"a1": "A", "b1": "B"})


@pytest.mark.slow
def test_the_simulated_user_reaches_a_clean_collection(tmp_path):
    data = make_labelled(tmp_path / "labelled", characters=4, per_character=6)
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_effort.py"), str(data), "--baseline",
                           "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("static_fixes_per_100=") and " actions_per_100=" in last
    assert '"clean": true' in done.stderr and "| today |" in done.stdout and "| new |" in done.stdout
    assert not (tmp_path / "labelled" / ".illusort").exists()   # the labelled folder is only read
    missing = subprocess.run([sys.executable, str(BENCHMARKS / "bench_effort.py"), str(tmp_path / "nowhere")],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "not found" in missing.stderr
