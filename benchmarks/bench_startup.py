"""Start-up time of the commands that need no model, against `illusort --help`, in one run.

    python benchmarks/bench_startup.py [--repeat 5]

Makes a small sorted folder first (hsv-hist, no torch needed for the timed commands), then
times each command as a fresh process (best and median of --repeat runs) and says whether it
imported torch (one more run under `python -X importtime`; the real undo is timed under it).
Target: < 0.5 s each, no torch. Before issue 11, `name`, `report` and a missing folder took
3.6-4.0 s here (torch imported by every command); after: 0.3-0.45 s (2-core machine, shared).
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


def run(args: list[str], env: dict, cwd: Path, importtime: bool = False) -> tuple[float, int, str]:
    """(seconds, exit code, stderr) of one fresh `python -m illusort.cli ARGS`; with
    `importtime`, stderr holds `-X importtime`'s report (which slows the run: not timed)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "illusort.cli",
                           *args], env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    return elapsed, done.returncode, done.stderr


def imports_torch(importtime: str) -> bool:
    """Whether `python -X importtime` output lists torch (names are indented by depth)."""
    return any(line.startswith("import time:") and line.rsplit("|", 1)[-1].strip() == "torch"
               for line in importtime.splitlines())


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
            for i in range(options.repeat + 1):
                if label == "name":
                    args = ["name", str(out), folder, "Rem"] if i % 2 == 0 else ["name", str(out), "Rem", folder]
                elapsed, code, imports = run(args, env, tmp, importtime=i == options.repeat)
                codes.add(code)
                if i < options.repeat:
                    times.append(elapsed)
                else:
                    torch_seen = imports_torch(imports)
            print(f"{label:26} {min(times):6.2f}s {statistics.median(times):6.2f}s  {'yes' if torch_seen else 'no ':5}"
                  f"  {','.join(map(str, sorted(codes)))}")
        # a real undo, once (it removes the sort)
        elapsed, code, imports = run(["undo", str(out)], env, tmp, importtime=True)
        torch_seen = imports_torch(imports)
        print(f"{'undo':26} {elapsed:6.2f}s {elapsed:6.2f}s  {'yes' if torch_seen else 'no ':5}  {code}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
