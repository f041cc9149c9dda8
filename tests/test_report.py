"""The review page: written from a sort, rendered by a real headless browser."""
import re
import shutil
import subprocess

import pytest

from illusort.layout import THUMBS

from conftest import draw_character, run_cli

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")
CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def browse(page, *args):
    """Run headless Chromium on a local file (no network is used or needed)."""
    if CHROMIUM is None:
        pytest.skip("no chromium here (apt install chromium) to render the page")
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=5000", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_report_renders_in_a_browser_and_marks_new_images(collection, tmp_path):
    root, truth = collection
    out = tmp_path / "sorted"
    run_cli("sort", root, "--out", out, *FAST)
    first = run_cli("report", out, "-q").output
    assert "4 characters, 40 images, 0 new" in first
    page = out / "report.html"
    assert len(list((out / THUMBS).glob("*.jpg"))) == 40
    assert "http" not in page.read_text().replace("http-equiv", "")  # nothing fetched from a network

    dom = browse(page, "--dump-dom")
    assert dom.count("<figure") == 40 and dom.count('class="character"') == 4
    assert re.search(r'data-loaded-images="40"', dom), "every thumbnail decoded in the browser"
    shot = tmp_path / "report.png"
    browse(page, "--window-size=1100,900", f"--screenshot={shot}")
    assert shot.stat().st_size > 10_000

    for k in range(3):
        draw_character(0, 300 + k).save(root / f"late{k}.png")
    run_cli("sort", root, "--out", out, *FAST)
    assert "4 characters, 43 images, 3 new" in run_cli("report", out, "-q").output
    dom = browse(page, "--dump-dom")
    assert dom.count('<figure class="new"') == 3 and "New since the last report" in dom
    assert re.search(r'data-loaded-images="43"', dom)


def test_undo_removes_the_report_and_the_folder_can_be_sorted_again(collection, tmp_path):
    root, _ = collection
    out = tmp_path / "sorted"
    run_cli("sort", root, "--out", out, *FAST)
    run_cli("report", out, "-q")
    run_cli("sort", "--undo", out)
    assert not (out / "report.html").exists() and not (out / THUMBS).exists()
    run_cli("sort", root, "--out", out, *FAST)
    assert "holds no illusort sort" in run_cli("report", tmp_path, ok=False).output
