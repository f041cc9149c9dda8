"""Make docs/report.png: the review page of a sort of synthetic pictures (drawn here: no
copyrighted art), after naming one character and adding new pictures.

    python docs/make_report_screenshot.py     # needs chromium (apt install chromium)
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from click.testing import CliRunner  # noqa: E402
from conftest import draw_character, draw_scene, make_collection  # noqa: E402

from illusort.cli import main  # noqa: E402


def illusort(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if result.exit_code:
        sys.exit(result.output)
    return result.output


def make() -> Path:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("needs chromium (apt install chromium)")
    work = Path(tempfile.mkdtemp(prefix="illusort-demo-"))
    pics, out = work / "fanart", work / "fanart-sorted"
    make_collection(pics, characters=3, per_character=7)
    for k in range(2):
        draw_scene([0, 1], seed=k, size=(480, 240)).save(pics / f"together_{k}.png")
    fast = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")
    illusort("sort", pics, "--out", out, *fast)
    illusort("report", out, "-q")
    first = sorted(p.name for p in out.iterdir() if p.name.startswith("character-"))[0]
    illusort("name", out, first, "Rem")
    for k in range(2):
        draw_character(0, 500 + k).save(pics / f"new_{k}.png")
    illusort("sort", pics, "--out", out, *fast)
    illusort("report", out, "-q")
    shot = HERE / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1000,900", f"--screenshot={shot}", (out / "report.html").as_uri()],
                   check=True, capture_output=True)
    shutil.rmtree(work)
    return shot


if __name__ == "__main__":
    print(make())
