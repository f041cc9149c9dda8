"""Make docs/review.png and docs/report.png from a sort of synthetic pictures (drawn here: no
copyrighted art): the `illusort review` page of one character with two pictures selected,
and the static report after naming one character and adding new pictures.

    python docs/make_screenshots.py     # needs chromium and chromium-driver, and selenium
"""
from __future__ import annotations

import re
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

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")


def illusort(*args) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if result.exit_code:
        sys.exit(result.output)
    return result.output


def review_shot(out: Path, shot: Path) -> None:
    """The review page of the largest unnamed character, two pictures selected, a name typed."""
    from selenium import webdriver
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    server = subprocess.Popen([sys.executable, "-m", "illusort.cli", "review", str(out), "--no-browser"],
                              stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
    url = re.search(r"http://\S+", server.stdout.readline()).group(0)
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,760", "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
    try:
        driver.get(url)
        driver.find_element(By.CSS_SELECTOR, 'nav a[data-folder^="character-"]').click()
        pictures = driver.find_elements(By.CSS_SELECTOR, "figure[data-dest]")
        pictures[0].click()
        ActionChains(driver).send_keys("j", "j", "x", "t", "Ram").perform()
        driver.execute_script("return new Promise(r => setTimeout(r, 500))")
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
        server.terminate()
        server.wait()


def make() -> list[Path]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None or shutil.which("chromedriver") is None:
        sys.exit("needs chromium and chromium-driver (apt install chromium chromium-driver)")
    work = Path(tempfile.mkdtemp(prefix="illusort-demo-"))
    pics, out = work / "fanart", work / "fanart-sorted"
    make_collection(pics, characters=3, per_character=7)
    for k in range(2):
        draw_scene([0, 1], seed=k, size=(480, 240)).save(pics / f"together_{k}.png")
    illusort("sort", pics, "--out", out, *FAST)
    illusort("report", out, "-q")
    first = sorted(p.name for p in out.iterdir() if p.name.startswith("character-"))[0]
    illusort("name", out, first, "Rem")
    for k in range(2):
        draw_character(0, 500 + k).save(pics / f"new_{k}.png")
    draw_character(4, 600).save(pics / "odd.png")
    illusort("sort", pics, "--out", out, *FAST)
    illusort("report", out, "-q")
    shots = [HERE / "report.png", HERE / "review.png"]
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1000,900", f"--screenshot={shots[0]}", (out / "report.html").as_uri()],
                   check=True, capture_output=True)
    review_shot(out, shots[1])
    shutil.rmtree(work)
    return shots


if __name__ == "__main__":
    print(*make())
