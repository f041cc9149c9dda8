"""Start-up time of the commands that need no model, against `illusort --help`, in one run.

    python benchmarks/bench_startup.py [--repeat 5]

Makes a small sorted folder first (hsv-hist, no torch needed for the timed commands), then
times each command as a fresh process (best and median of --repeat runs) and says whether it
imported torch (`python -X importtime`). Target: < 0.5 s each, no torch.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(args: list[str], env: dict, cwd: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "illusort.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    return elapsed, done.returncode, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_collection  # the tests' synthetic pictures

    tmp = Path(tempfile.mkdtemp(prefix="illusort-startup-"))
    try:
        env["XDG_CACHE_HOME"] = str(tmp / "cache")
        root, out = tmp / "pics", tmp / "out"
        make_collection(root, characters=3, per_character=6)
        subprocess.run([sys.executable, "-m", "illusort.cli", "sort", str(root), "--out", str(out), "--model",
                        "hsv-hist", "-q", "--workers", "0"], env=env, check=True, capture_output=True)
        folder = sorted(p.name for p in out.iterdir() if p.name.startswith("character-"))[0]
        commands = {
            "--help": ["--help"],
            "name": ["name", str(out), folder, "Rem"],       # renames back and forth below
            "report": ["report", str(out), "-q"],
            "status": ["status", str(out)],
            "undo (nothing to undo)": ["undo", str(tmp / "nothing")],
            "sort missing folder": ["sort", str(tmp / "missing")],
            "sort unknown model": ["sort", str(root), "--model", "no-such-model"],
        }
        print(f"{'command':26} {'best':>7} {'median':>7}  torch  exit")
        for label, args in commands.items():
            times, torch_seen, codes = [], False, set()
            for i in range(options.repeat):
                if label == "name":
                    args = ["name", str(out), folder, "Rem"] if i % 2 == 0 else ["name", str(out), "Rem", folder]
                elapsed, code, imports = run(args, env, tmp)
                times.append(elapsed)
                codes.add(code)
                torch_seen |= any(line.rstrip().endswith("| torch") for line in imports.splitlines())
            print(f"{label:26} {min(times):6.2f}s {statistics.median(times):6.2f}s  {'yes' if torch_seen else 'no ':5}"
                  f"  {','.join(map(str, sorted(codes)))}")
        # a real undo, once (it removes the sort)
        elapsed, code, imports = run(["undo", str(out)], env, tmp)
        torch_seen = any(line.rstrip().endswith("| torch") for line in imports.splitlines())
        print(f"{'undo':26} {elapsed:6.2f}s {elapsed:6.2f}s  {'yes' if torch_seen else 'no ':5}  {code}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
