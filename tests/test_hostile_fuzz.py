"""Seeded fuzz: random symbolic-link layouts planted in IN and OUT, random edited manifests,
then a random command (undo, a correction, a re-sort, the report, folders renamed by hand),
called as library functions (fast). Whatever happens, no byte outside IN and OUT changes
(sha1 of every file beside them, the sacrificial folder included), no file of IN is lost, and
a failure is one of the errors the CLI prints as one line (never a traceback)."""
import json
import os
import random
import sqlite3
from collections import Counter

from illusort import corrections
from illusort.index import IndexBusy, IndexError_, default_index_path, remember_output
from illusort.report import write_report
from illusort.safepath import Unsafe
from illusort.sort import MANIFEST, MODES, SortError, apply_sort, plan_entries, take_renames, undo_sort

from hostile import changed, contents, fingerprint, make_victim

CASES = 300
ONE_LINE = (SortError, Unsafe, IndexBusy, IndexError_, OSError, sqlite3.Error)  # what `fail_cleanly` prints
NAMES = ["f0.png", "f1.png", "s/f2.png", "s/f3.png", "f4.png"]
FOLDERS = ["character-001", "character-002", "unsorted"]


def build(base, rng):
    """IN, OUT (maybe sorted, maybe recorded in IN's index), the victim, random links."""
    root, out = base / "pics", base / "out"
    (root / "s").mkdir(parents=True)
    for k, name in enumerate(NAMES):
        (root / name).write_bytes(rng.randbytes(32) + bytes([k]))
    victim = make_victim(base)
    mode = rng.choice(MODES)
    if rng.random() < 0.7:
        apply_sort(root, out, plan_entries(root, NAMES, [rng.choice(FOLDERS) for _ in NAMES]), mode, progress=False)
        if rng.random() < 0.8:
            remember_output(default_index_path(root), out)
    out.mkdir(exist_ok=True)
    targets = [victim, victim / "sub", victim / "a.png", victim / "notes.txt", root / "s", root / "f0.png", base]
    plants = [out / "evil", out / "character-001", out / "character-002" / "f1.png", root / "s2", root / "up",
              root / "f4.png", out / ".illusort-sort.lock", out / (MANIFEST + ".tmp"), out / ".illusort-thumbs",
              out / ".illusort-report.json", out / ".report.html.tmp", root / ".illusort", out / "unsorted"]
    for where in rng.sample(plants, rng.randint(0, 4)):
        if where.is_dir() and not where.is_symlink():
            if any(where.iterdir()):
                continue  # never throw away sorted files: the test would lose them itself
            where.rmdir()
        elif os.path.lexists(where):
            if where.parent == root and where.name != "f4.png":
                continue
            where.unlink()
        where.parent.mkdir(parents=True, exist_ok=True)
        where.symlink_to(rng.choice(targets))
    return root, out, victim, mode


def random_manifest(root, out, victim, rng):
    source = rng.choice([str(root.resolve())] * 3 + [str(victim.resolve()), f"{root}/../victim", "/"])
    srcs = ([f"{root.resolve()}/{n}" for n in NAMES] + [f"{root.resolve()}/s2/a.png", f"{root.resolve()}/up/victim/a.png",
            f"{root.resolve()}/new/deep/x.png", str(victim.resolve() / "a.png"), f"{root.resolve()}/../victim/b.jpg"])
    dests = ([f"{f}/{n.split('/')[-1]}" for f in FOLDERS for n in NAMES] + ["evil/a.png", "evil/sub/c.png", "a.png",
             "../victim/a.png", "/etc/x", "character-001/../../victim/a.png", "", "unsorted/.."])
    entries = []
    for _ in range(rng.randint(0, 6)):
        e = {"src": rng.choice(srcs), "dest": rng.choice(dests), "state": rng.choice(["done", "done", "pending"])}
        if rng.random() < 0.2:
            e["from"] = rng.choice(dests)
        entries.append(e)
    data = {"version": 1, "source": source, "mode": rng.choice(MODES + ("<b>",)), "entries": entries}
    (out / MANIFEST).write_text(json.dumps(data))


def operate(root, out, mode, rng):
    given = rng.choice([None, root])
    command = rng.randrange(6)
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
    else:
        write_report(out, progress=False, source=given)


def test_random_manifests_and_links_never_reach_outside(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is not under test here: 3x faster
    rng = random.Random(20261126)
    tally = Counter()
    for case in range(CASES):
        base = tmp_path / f"case{case}"
        base.mkdir()
        root, out, victim, mode = build(base, rng)
        if rng.random() < 0.6:
            random_manifest(root, out, victim, rng)
        outside = fingerprint(base, {"pics", "out"})
        had = set(contents(root, out))
        for _ in range(rng.randint(1, 3)):
            try:
                operate(root, out, mode, rng)
                tally["completed"] += 1
            except ONE_LINE as error:
                assert "\n" not in str(error), error
                tally["refused"] += 1
        diff = changed(outside, fingerprint(base, {"pics", "out"}))
        assert not diff, (case, diff)
        assert had <= set(contents(root, out)), (case, "a file of IN or OUT was lost")
        tally["cases"] += 1
    print(f"\nfuzz: {dict(tally)}; outside bytes changed 0; tracebacks 0")
    assert tally["cases"] == CASES and tally["refused"] > 50 and tally["completed"] > 50
