"""Seeded fuzz: random symbolic-link layouts planted in IN and OUT, random edited manifests,
then a random command (undo, a correction, a re-sort, the report, folders renamed by hand),
called as library functions (fast). Whatever happens, no byte outside IN and OUT changes
(sha1 of every file beside them, the sacrificial folder included), no file of IN is lost, and
a failure is one of the errors the CLI prints as one line (never a traceback). Names hold
control characters, IN's path URI characters (`#`, `?`, `%`), and IN's index hostile stored
decisions (`..`, `/x`, own names): whatever `status` then suggests prints as one line that
means exactly its words (`terminal`)."""
import json
import os
import random
import sqlite3
from collections import Counter

import pytest

from illusort import corrections
from illusort.cli.rendering import one_line
from illusort.index import Index, IndexBusy, IndexUnusable, default_index_path, remember_output
from illusort.report import write_report
from illusort.safepath import Unsafe
from illusort.corrections import take_renames
from illusort.errors import IllusortError
from illusort.status import status
from illusort.terminal import shown
from illusort.layout import MANIFEST
from illusort.manifest import MODES
from illusort.naming import plan_entries
from illusort.sort import apply_sort, undo_sort

from hostile import changed, contents, fingerprint, make_victim

pytestmark = pytest.mark.slow  # kills, fuzzing or training: `pytest -m 'not slow'` skips them

CASES = 300
ONE_LINE = (IllusortError, Unsafe, IndexBusy, IndexUnusable, OSError, sqlite3.Error)  # what cli/group.py prints
NAMES = ["f0.png", "f1.png", "s/f2.png", "s/f3.png", "f4.png", "s/f5\x1b[4D; touch X #.png", "f6\n\u202e.png"]
FOLDERS = ["character-001", "character-002", "unsorted", "Rem\x1b[2J"]
ROOTS = ["pics"] * 3 + ["pics #1?mode=rw", "pics%3Fx", "pics\x1b]0;\x07\n"]  # IN's name
STORED = ["..", ".", "/x", "../victim", ".illusort", "report.html", "a/b", "", "Rem\x1b[2J", "character-002"]


def build(base, rng):
    """IN, OUT (maybe sorted, maybe recorded in IN's index), the victim (holding copies of
    IN's files under the same names: a copy-mode undo through a link would take them for
    its own), random links among them."""
    root, out = base / rng.choice(ROOTS), base / "out"
    (root / "s").mkdir(parents=True)
    victim = make_victim(base)
    (victim / "s").mkdir()
    for k, name in enumerate(NAMES):
        (root / name).write_bytes(rng.randbytes(32) + bytes([k]))
        for copy in (victim / name, victim / os.path.basename(name)):
            copy.write_bytes((root / name).read_bytes())
    mode = rng.choice(MODES)
    if rng.random() < 0.7:
        apply_sort(root, out, plan_entries(root, NAMES, [rng.choice(FOLDERS) for _ in NAMES]), mode, progress=False)
        if rng.random() < 0.8:
            remember_output(default_index_path(root), out)
    out.mkdir(exist_ok=True)
    targets = [victim] * 4 + [victim / "s", victim / "f0.png", victim / "notes.txt", root / "s", root / "f0.png", base]
    plants = [out / "evil"] * 3 + [root / "s2"] * 2 + [
        out / "character-001", out / "character-002" / "f1.png", root / "up", root / "f4.png",
        out / ".illusort-sort.lock", out / (MANIFEST + ".tmp"), out / ".illusort-thumbs", out / ".illusort-report.json",
        out / ".report.html.tmp", root / ".illusort", out / "unsorted"]
    chosen = {rng.choice(plants) for _ in range(rng.randint(0, 3))}
    chosen |= {out / "evil"} if rng.random() < 0.5 else set()
    chosen |= {root / "s2"} if rng.random() < 0.4 else set()
    for where in chosen:
        if where.is_dir() and not where.is_symlink():
            if any(where.iterdir()):
                continue  # never throw away sorted files: the test would lose them itself
            where.rmdir()
        elif os.path.lexists(where):
            if where.parent == root and where.name != "f4.png":
                continue
            where.unlink()
        where.parent.mkdir(parents=True, exist_ok=True)
        where.symlink_to(victim if rng.random() < 0.5 else rng.choice(targets))
    return root, out, victim, mode


def random_manifest(root, out, victim, rng, mode):
    real = str(root.resolve())
    source = rng.choice([real] * 6 + [str(victim.resolve()), f"{root}/../victim", "/"])
    entries = []
    for _ in range(rng.randint(1, 5)):
        name = rng.choice(NAMES)
        base = os.path.basename(name)
        # mostly entries whose text is fine (a bad one makes the whole manifest refused at once)
        src = rng.choice([f"{real}/{name}"] * 12 + [f"{real}/s2/{base}"] * 4 + [f"{real}/s2/new-{base}"] * 4 + [
            f"{real}/s2/missing.png", f"{real}/up/victim/a.png", f"{real}/new/deep/x.png",
            str(victim.resolve() / "a.png"), f"{real}/../victim/b.jpg"])
        folder = rng.choice(FOLDERS + ["evil"] * 3)
        dest = rng.choice([f"{folder}/{base}"] * 60 + [
            "a.png", "../victim/a.png", "/etc/x", "character-001/../../victim/a.png", "", "unsorted/..", "a/b/c"])
        e = {"src": src, "dest": dest, "state": rng.choice(["done", "done", "pending"])}
        if rng.random() < 0.2:
            e["from"] = f"{rng.choice(FOLDERS + ['evil'])}/{base}"
        entries.append(e)
    if (out / MANIFEST).is_file() and rng.random() < 0.5:  # or the real manifest, edited
        entries = json.loads((out / MANIFEST).read_text())["entries"]
        for e in entries:
            base = os.path.basename(e["dest"])
            if rng.random() < 0.4:
                e["src"] = rng.choice([f"{real}/s2/{base}", f"{real}/s2/new-{base}", f"{real}/up/victim/{base}"])
            if rng.random() < 0.3:
                e["dest"] = f"evil/{base}"
            if rng.random() < 0.2:
                e["state"] = "pending"
    mode = rng.choice([mode] * 4 + list(MODES) + ["<b>"])
    (out / MANIFEST).write_text(json.dumps({"version": 1, "source": source, "mode": mode, "entries": entries}))


def operate(root, out, mode, rng):
    given = rng.choice([None, root])
    command = rng.choice([0, 0, 0, 1, 2, 3, 4, 5, 6, 7])
    if command == 0:
        undo_sort(out, given)
    elif command == 1:
        corrections.name_character(out, rng.choice(FOLDERS + ["evil"]), "Z", source=given)
    elif command == 2:
        corrections.merge_characters(out, "character-001", ["character-002", "evil"][: rng.randint(1, 2)],
                                     source=given)
    elif command == 3:
        take_renames(root, out)
    elif command == 4:
        apply_sort(root, out, plan_entries(root, NAMES, [rng.choice(FOLDERS + ["evil"]) for _ in NAMES]),
                   rng.choice([mode, "move"]), progress=False)
    elif command == 5:
        write_report(out, progress=False, source=given)
    elif command == 6:  # decisions planted in IN's index, read back as a sort does
        with Index(default_index_path(root)) as index:
            index.db.executemany("INSERT OR REPLACE INTO decisions(path, face, character) VALUES (?,?,?)",
                                 [(os.fsencode(n), 0, rng.choice(STORED)) for n in NAMES if rng.random() < 0.5])
            index.db.commit()
            decided = index.decisions()
        apply_sort(root, out, plan_entries(root, NAMES, [decided.get((n, 0)) or rng.choice(FOLDERS) for n in NAMES]),
                   rng.choice([mode, "move"]), progress=False)
    else:
        found = status(out)
        for line in [found["sort_again"], *(s["command"] for s in found["suggestions"])]:
            assert shown(line) == line, line  # printable: the screen shows what the shell runs


@pytest.mark.filterwarnings("ignore:(?s).*ignored decisions naming")  # the planted ones, said once per sort
def test_random_manifests_and_links_never_reach_outside(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is not under test here: 3x faster
    rng = random.Random(20261126)
    tally = Counter()
    for case in range(CASES):
        base = tmp_path / f"case{case}"
        base.mkdir()
        root, out, victim, mode = build(base, rng)
        if rng.random() < 0.6:
            random_manifest(root, out, victim, rng, mode)
        skip = {root.name, "out"}
        outside = fingerprint(base, skip)
        had = set(contents(root, out))
        for _ in range(rng.randint(1, 3)):
            try:
                operate(root, out, mode, rng)
                tally["completed"] += 1
            except ONE_LINE as error:
                assert "\n" not in one_line(error) and "\x1b" not in one_line(error), error  # as the CLI prints it
                tally["refused"] += 1
        diff = changed(outside, fingerprint(base, skip))
        assert not diff, (case, diff)
        assert had <= set(contents(root, out)), (case, "a file of IN or OUT was lost")
        tally["cases"] += 1
    print(f"\nfuzz: {dict(tally)}; outside bytes changed 0; tracebacks 0")
    assert tally["cases"] == CASES and tally["refused"] > 50 and tally["completed"] > 50
