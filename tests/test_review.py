"""`illusort review OUT`: the app's actions and refusals over HTTP (Starlette's TestClient and
the live server), and the whole page driven in headless Chromium through WebDriver."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from illusort.index import Index, default_index_path
from illusort.layout import MANIFEST
from illusort.manifest import OutputBusy, read_manifest
from illusort.naming import folder_of

from conftest import draw_character, make_collection, run_cli

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")
REPO = Path(__file__).resolve().parent.parent
PORT = 18765  # the TestClient's: no socket is opened


@pytest.fixture
def sorted_out(tmp_path):
    """A sort of 4 characters x 10 pictures, and 3 odd pictures left in unsorted/."""
    root, out = tmp_path / "pics", tmp_path / "out"
    make_collection(root)
    run_cli("sort", root, "--out", out, *FAST)
    for k in range(2):
        draw_character(4, 50 + k).save(root / f"odd{k}.png")
    draw_character(5, 60).save(root / "odd5.png")
    run_cli("sort", root, "--out", out, *FAST)
    assert len(list((out / "unsorted").iterdir())) == 3
    return root, out


def layout(out: Path) -> dict[str, str]:
    """file name -> folder, as OUT holds them on disk."""
    return {p.name: p.parent.name for p in out.glob("*/*") if not p.parent.name.startswith(".")}


def decisions(root: Path) -> dict[str, str]:
    with Index(default_index_path(root)) as index:
        return {path.rsplit("/", 1)[-1]: folder for (path, _), folder in index.decisions().items()}


def rejections(root: Path) -> dict[str, set]:
    """file name -> the characters the user said it is not."""
    import sqlite3

    found: dict[str, set] = {}
    with sqlite3.connect(default_index_path(root)) as db:
        for path, character in db.execute("SELECT path, character FROM rejections"):
            found.setdefault(os.fsdecode(path).rsplit("/", 1)[-1], set()).add(character)
    return found


def client(out: Path):
    from starlette.testclient import TestClient

    from illusort.review import Review, create_app

    review = Review(out, port=PORT)
    return review, TestClient(create_app(review), base_url=f"http://127.0.0.1:{PORT}")


def post(http, review, action, body, **headers):
    return http.post(f"/action/{action}", content=json.dumps(body),
                     headers={"Content-Type": "application/json", "X-Illusort-Token": review.token,
                              "Origin": f"http://127.0.0.1:{PORT}", **headers})


# ---- refusals --------------------------------------------------------------------------------

def test_requests_without_the_token_with_a_wrong_host_or_from_another_site_are_refused(sorted_out):
    root, out = sorted_out
    review, http = client(out)
    dest = read_manifest(out)["entries"][0].dest
    assert http.get("/").status_code == 403
    assert http.get(f"/thumb/{dest}").status_code == 403
    assert http.get(f"/?token={review.token}x").status_code == 403
    assert http.get(f"/?token={review.token}", headers={"Host": "evil.example:18765"}).status_code == 403
    assert http.get(f"/?token={review.token}", headers={"Host": f"127.0.0.1:{PORT + 1}"}).status_code == 403
    page = http.get(f"/?token={review.token}")  # the first visit keeps the token in a cookie
    assert page.status_code == 200 and page.url.path == "/folder/unsorted" and "token=" not in str(page.url)
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert http.get(f"/thumb/{dest}").headers["content-type"] == "image/jpeg"
    assert http.get(f"/thumb/{dest}", headers={"Host": "evil.example"}).status_code == 403

    before = layout(out)
    move = {"files": [dest], "to": "Rem"}
    assert post(http, review, "move", move, Origin="http://evil.example").status_code == 403
    assert post(http, review, "move", move, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert post(http, review, "move", move, **{"X-Illusort-Token": "guess"}).status_code == 403
    assert http.post("/action/move", data={"files": dest, "to": "Rem"},  # a plain form post
                     headers={"X-Illusort-Token": review.token}).status_code == 403
    assert layout(out) == before and decisions(root) == {}


def test_only_pictures_of_the_sort_are_served_never_a_path_outside_in_and_out(sorted_out, tmp_path):
    root, out = sorted_out
    victim = tmp_path / "victim"
    victim.mkdir()
    draw_character(0, 1).save(victim / "secret.png")
    (out / "secret.png").symlink_to(victim / "secret.png")
    os.symlink(victim / "secret.png", root / "planted.png")  # a link in IN to a file outside it
    data = json.loads((out / MANIFEST).read_text())  # ... that an edited manifest names
    data["entries"].append({"src": str(root.resolve() / "planted.png"), "dest": "unsorted/planted.png"})
    (out / MANIFEST).write_text(json.dumps(data))
    review, http = client(out)
    http.get(f"/?token={review.token}")
    for path in ("/picture/unsorted/planted.png", "/thumb/unsorted/planted.png", "/picture/secret.png",
                 "/picture/../victim/secret.png", "/picture/%2e%2e/victim/secret.png", "/thumb/..%2fvictim/secret.png",
                 f"/picture/{victim}/secret.png", "/picture/.illusort-sort.json", "/picture/unsorted"):
        answer = http.get(path)
        assert answer.status_code == 404 and b"PNG" not in answer.content, path
    shown = http.get("/picture/unsorted/odd0.png")
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/png"
    assert not list(victim.parent.glob(".illusort-thumbs")) and sorted(os.listdir(victim)) == ["secret.png"]


# ---- actions -----------------------------------------------------------------------------------

def test_each_action_is_the_library_call_applied_at_once_and_kept_by_the_next_sort(sorted_out):
    root, out = sorted_out
    review, http = client(out)
    http.get(f"/?token={review.token}")
    hint = review.picture("unsorted/odd0.png").hint["folder"]
    assert post(http, review, "accept", {"files": ["unsorted/odd0.png"]}).json()["message"] == \
        f"1 picture moved to {hint}"
    other = review.picture("unsorted/odd1.png").hint["folder"]
    assert post(http, review, "reject", {"files": ["unsorted/odd1.png"]}).json()["message"] == \
        f"1 picture marked not {other}"
    assert (review.picture("unsorted/odd1.png").hint or {}).get("folder") != other
    two = sorted(p.name for p in (out / "character-001").iterdir())[:2]
    assert post(http, review, "move", {"files": [f"character-001/{n}" for n in two], "to": "Ram"}).status_code == 200
    answer = post(http, review, "name", {"folder": "character-001", "name": "Rem"}).json()
    assert answer == {"message": "character-001 is now Rem", "go": "/folder/Rem"}
    assert post(http, review, "merge", {"into": "character-004", "others": ["character-003"]}).status_code == 200
    assert not (out / "character-003").exists()
    assert post(http, review, "undo", {}).json()["message"] == "undone: character-003 merged into character-004"
    assert post(http, review, "move", {"files": ["unsorted/odd5.png"], "to": "not-a-character"}).status_code == 200
    bad = post(http, review, "move", {"files": ["unsorted/odd1.png"], "to": "../x"})
    assert bad.status_code == 400 and "cannot be a folder name" in bad.json()["error"]

    expected = layout(out)
    assert expected["odd0.png"] == hint and expected["odd5.png"] == "not-a-character"
    assert [expected[n] for n in two] == ["Ram", "Ram"] and len(list((out / "Rem").iterdir())) == 8
    for folder in ("character-002", "character-003", "character-004"):  # merged, then undone
        assert len(list((out / folder).iterdir())) == 10 + (folder == hint)
    assert {decisions(root)[n] for n in two} == {"Ram"} and decisions(root)["odd0.png"] == hint
    assert rejections(root)["odd1.png"] == {other}
    run_cli("sort", root, "--out", out, *FAST)
    assert layout(out) == expected
    page = http.get("/folder/Rem").text
    assert page.count("<figure") == 8 and "least confident first" in page
    run_cli("undo", out)  # in another terminal: the page says so in one line
    gone = http.get("/folder/Rem")
    assert gone.status_code == 409 and "holds no illusort sort" in gone.text


def test_a_character_page_shows_the_least_confident_first_and_escapes_every_name(sorted_out):
    root, out = sorted_out
    stranger = sorted(p.name for p in (out / "character-002").iterdir())[0]
    run_cli("move", out, f"character-002/{stranger}", "--to", "character-001")
    run_cli("name", out, "character-001", "<img src=x onerror=alert(1)>")
    review, http = client(out)
    http.get(f"/?token={review.token}")
    page = http.get("/folder/%3Cimg%20src=x%20onerror=alert(1)%3E").text
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    order = re.findall(r'<figure[^>]* data-dest="[^"/]*/([^"]+)"', page)
    assert len(order) == 11 and order[0] == stranger  # the picture of another character comes first
    fits = [float(f) for f in re.findall(r"fits (-?[0-9.]+)", page)]
    assert fits == sorted(fits) and fits[0] < fits[-1]


def test_same_character_suggestions_are_taken_or_dismissed_with_one_click(sorted_out):
    root, out = sorted_out
    half = sorted(p.name for p in (out / "character-002").iterdir())[:5]
    run_cli("move", out, *[f"character-002/{n}" for n in half], "--to", "Twin")
    review, http = client(out)
    http.get(f"/?token={review.token}")
    page = http.get("/folder/same").text
    first = re.search(r'<section class="pair"[^>]* data-pair="([0-9a-f]+)">\s*<p>Same character\? '
                      r"<strong>Twin</strong> and <strong>character-002</strong>", page)
    assert first, page[:3000]
    answer = post(http, review, "accept", {"pair": first.group(1)}).json()
    assert answer == {"message": "character-002 merged into Twin", "go": "/folder/same"}
    assert not (out / "character-002").exists() and len(list((out / "Twin").iterdir())) == 10
    assert post(http, review, "accept", {"pair": first.group(1)}).status_code == 400  # offered no more
    post(http, review, "undo", {})
    assert len(list((out / "character-002").iterdir())) == 5
    key = re.search(r'data-pair="([0-9a-f]+)">\s*<p>Same character\? <strong>Twin</strong>',
                    http.get("/folder/same").text).group(1)
    assert post(http, review, "reject", {"pair": key}).json()["message"] == "dismissed: merge Twin and character-002"
    assert "<strong>Twin</strong> and <strong>character-002</strong>" not in http.get("/folder/same").text
    assert len(list((out / "character-002").iterdir())) == 5 and len(list((out / "Twin").iterdir())) == 5


def hold_lock(out: Path, seconds: float) -> subprocess.Popen:
    """Another process (a sort in another terminal) that takes OUT's lock and holds it."""
    code = ("import sys, time; from pathlib import Path; from illusort.manifest import output_lock\n"
            "try:\n with output_lock(Path(sys.argv[1])):\n  print('held', flush=True); time.sleep(float(sys.argv[2]))\n"
            "except Exception as e: print('busy', flush=True)")
    return subprocess.Popen([sys.executable, "-c", code, str(out), str(seconds)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def test_while_a_sort_holds_out_an_action_answers_busy_and_changes_nothing(sorted_out):
    root, out = sorted_out
    review, http = client(out)
    http.get(f"/?token={review.token}")
    holder = hold_lock(out, 30)
    assert holder.stdout.readline().strip() == "held"
    before, manifest = layout(out), (out / MANIFEST).read_bytes()
    answer = post(http, review, "move", {"files": ["unsorted/odd0.png"], "to": "Rem"})
    holder.kill()
    holder.communicate()
    assert answer.status_code == 409 and answer.json()["error"].startswith("busy")
    assert layout(out) == before and (out / MANIFEST).read_bytes() == manifest and decisions(root) == {}


def test_a_correction_holds_out_from_its_first_write_to_its_last(sorted_out, monkeypatch):
    """A sort starting in another terminal while a correction records its decision is refused:
    before, OUT's lock was free between the decision and the moves, so the moves could fail
    as busy after the index had been changed (half applied)."""
    from illusort import corrections

    root, out = sorted_out
    seen = []
    record = corrections.record_renames

    def and_a_sort_starts(index, root_, entries):
        if entries:
            holder = hold_lock(out, 3)
            seen.append(holder.communicate()[0].strip())
        return record(index, root_, entries)

    monkeypatch.setattr(corrections, "record_renames", and_a_sort_starts)
    corrections.move_images(out, [Path("unsorted/odd0.png")], "Rem")
    assert seen == ["busy"] and layout(out)["odd0.png"] == "Rem" and decisions(root)["odd0.png"] == "Rem"
    with pytest.raises(OutputBusy):  # and the other way round: nothing written while a sort holds OUT
        holder = hold_lock(out, 30)
        try:
            assert holder.stdout.readline().strip() == "held"
            corrections.move_images(out, [Path("unsorted/odd1.png")], "Rem")
        finally:
            holder.kill()
            holder.communicate()
    assert "odd1.png" not in decisions(root)


# ---- the live server ------------------------------------------------------------------------------

def start(out: Path, *args) -> tuple[subprocess.Popen, str, float]:
    """`illusort review OUT --no-browser` as a process; (it, its URL, seconds to the first page)."""
    began = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "illusort.cli", "review", str(out), "--no-browser", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    line = server.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+/\?token=\S+)", line)
    assert match, line + server.stdout.read()
    browse = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())  # the token becomes a cookie
    assert b"<figure" in browse.open(match.group(1), timeout=30).read()
    return server, match.group(1), time.perf_counter() - began


def stop(server: subprocess.Popen) -> str:
    server.send_signal(signal.SIGINT)
    rest, _ = server.communicate(timeout=20)
    return rest


def test_the_server_refuses_strangers_and_ctrl_c_stops_it(sorted_out):
    root, out = sorted_out
    server, url, seconds = start(out)
    try:
        base = url.split("/?")[0]
        print(f"first page after {seconds:.2f} s")
        for request in (urllib.request.Request(base + "/folder/unsorted"),
                        urllib.request.Request(url, headers={"Host": "attacker.example"})):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            assert refused.value.code == 403
        busy_port = int(base.rsplit(":", 1)[1])
        again = run_cli("review", out, "--no-browser", "--port", busy_port, ok=False)
        assert again.exit_code == 1 and "give another --port" in again.output
    finally:
        rest = stop(server)
    assert server.returncode == 0 and rest.strip().endswith("review stopped"), rest
    assert "Traceback" not in rest


def test_review_needs_no_model_and_a_sort(tmp_path):
    code = "import sys; import illusort.cli, illusort.review; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.strip() == "False", done.stderr
    assert "holds no illusort sort" in run_cli("review", tmp_path, "--no-browser", ok=False).output


# ---- in a real browser ------------------------------------------------------------------------------

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    """Headless Chromium through WebDriver (Debian: apt install chromium chromium-driver)."""
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no chromium and chromium-driver here (apt install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900",
                     "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


def test_fixing_a_sort_in_the_browser(sorted_out, browser):
    """Accept a suggestion, reject one, move two pictures to a new character, rename one, merge
    two and undo that, with clicks and keys; then OUT, the index and a re-run of sort agree."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    root, out = sorted_out
    server, url, _ = start(out)
    wait = WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException))

    def done(text: str):
        try:
            wait.until(lambda d: text in d.find_element(By.ID, "message").text)
        except TimeoutException:
            pytest.fail(f"no {text!r} on the page; it says {browser.find_element(By.ID, 'message').text!r}")

    def keys(*typed):  # to the element that has the focus, as a person types
        ActionChains(browser).send_keys(*typed).perform()

    def figure(dest: str):
        return browser.find_element(By.CSS_SELECTOR, f'figure[data-dest="{dest}"]')

    try:
        browser.get(url)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "figure[data-dest]"))
        assert "/folder/unsorted" in browser.current_url and "token=" not in browser.current_url
        assert "undo the last action" in browser.find_element(By.CLASS_NAME, "keys").text
        loaded = "return [...document.images].filter(i => i.complete && i.naturalWidth > 0).length"
        wait.until(lambda d: d.execute_script(loaded) == 3)  # every thumbnail decoded
        hint = figure("unsorted/odd0.png").find_element(By.CLASS_NAME, "target").text
        figure("unsorted/odd0.png").find_element(By.CLASS_NAME, "accept").click()   # accept: one click
        done(f"1 picture moved to {hint}")
        other = figure("unsorted/odd1.png").find_element(By.CLASS_NAME, "target").text
        figure("unsorted/odd1.png").find_element(By.CLASS_NAME, "reject").click()   # reject: one click
        done(f"1 picture marked not {other}")

        browser.find_element(By.CSS_SELECTOR, 'nav a[data-folder="character-001"]').click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "main").get_attribute("data-folder") == "character-001")
        pictures = browser.find_elements(By.CSS_SELECTOR, "figure[data-dest]")
        two = [p.get_attribute("data-dest") for p in pictures[:2]]
        pictures[0].click()                                                           # select by click
        keys("j", "x", "t", "Ram", Keys.ENTER)                                        # next, select, send to...
        done("2 pictures moved to Ram")

        keys("e", "Rem", Keys.ENTER)                                                  # rename inline
        done("character-001 is now Rem")
        assert browser.current_url.endswith("/folder/Rem")

        browser.find_element(By.CSS_SELECTOR, 'nav a[data-folder="character-003"]').click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "main").get_attribute("data-folder") == "character-003")
        browser.find_element(By.ID, "into").send_keys("character-004", Keys.ENTER)   # merge
        done("character-003 merged into character-004")
        assert not (out / "character-003").exists()
        assert len(list((out / "character-004").iterdir())) == 20 + (hint in ("character-003", "character-004"))
        keys("u")                                                                     # undo
        done("undone: character-003 merged into character-004")
    finally:
        stop(server)

    expected = layout(out)
    assert expected["odd0.png"] == hint
    assert [expected[Path(d).name] for d in two] == ["Ram", "Ram"]
    assert sorted(set(expected.values())) == sorted({"Ram", "Rem", "character-002", "character-003", "character-004",
                                                     "unsorted", hint})
    for folder in ("character-002", "character-003", "character-004"):
        assert len(list((out / folder).iterdir())) == 10 + (folder == hint)
    assert len(list((out / "Rem").iterdir())) == 8
    assert {e.dest for e in read_manifest(out)["entries"]} == {f"{f}/{n}" for n, f in expected.items()}
    chosen = decisions(root)
    assert {chosen[Path(d).name] for d in two} == {"Ram"} and chosen["odd0.png"] == hint
    assert rejections(root)["odd1.png"] == {other} and expected["odd1.png"] != other
    assert {folder for name, folder in chosen.items() if expected[name] == "Rem"} == {"Rem"}
    run_cli("sort", root, "--out", out, *FAST)
    assert layout(out) == expected
    assert {folder_of(e.dest) for e in read_manifest(out)["entries"]} == set(expected.values())
