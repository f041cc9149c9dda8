import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from illusort.index import Index, default_index_path
from illusort.weights import load_model, with_faces, with_precision

from conftest import draw_character, index_key, run_cli


def index_state(root, model="hsv-hist"):
    with Index(default_index_path(root)) as index:
        rows, vectors = index.embeddings(index_key(model))
    return {r.path: v for r, v in zip(rows, vectors)}


def embed(root, *extra):
    return run_cli("embed", root, "--model", "hsv-hist", "-q", "--workers", "0", *extra).output


def test_incremental_embed_touches_only_changed_files(collection):
    root, truth = collection
    assert f"{len(truth)} embedded" in embed(root)
    before = index_state(root)
    assert len(before) == len(truth)

    assert f"0 embedded, 0 reused by content, {len(truth)} unchanged" in embed(root)

    changed, touched, renamed, deleted = sorted(truth)[:4]
    draw_character(5, 99).save(root / changed)                      # new content
    os.utime(root / touched, ns=(1, 1))                             # same content, new mtime
    os.rename(root / renamed, root / (renamed + ".moved.png"))      # same content, new name
    os.remove(root / deleted)
    draw_character(1, 50).save(root / "new.png")
    out = embed(root)
    assert "2 embedded, 2 reused by content" in out and "2 removed from index" in out
    after = index_state(root)
    assert set(after) == (set(before) - {renamed, deleted}) | {renamed + ".moved.png", "new.png"}
    assert not np.allclose(after[changed], before[changed])
    assert np.array_equal(after[touched], before[touched])
    assert np.array_equal(after[renamed + ".moved.png"], before[renamed])


def test_corrupt_file_among_good_ones_is_skipped_and_reported(collection):
    root, truth = collection
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "page.png").write_text("<html>not found</html>")
    out = embed(root)
    assert f"{len(truth)} embedded" in out and "2 skipped" in out and "broken.jpg" in out
    assert "2 skipped" in embed(root)  # still reported on the next run, not retried
    strict = run_cli("embed", root, "--model", "hsv-hist", "-q", "--strict", ok=None)
    assert strict.exit_code == 3 and "2 file(s) skipped" in strict.output
    assert len(index_state(root)) == len(truth)


def test_non_utf8_and_newline_names(tmp_path):
    root = tmp_path / "odd"
    root.mkdir()
    draw_character(0, 1).save(os.fsencode(root) + b"/bad\xff\xfename.png")
    draw_character(0, 2).save(root / "new\nline.png")
    assert "2 embedded" in embed(root)
    assert set(index_state(root)) == {os.fsdecode(b"bad\xff\xfename.png"), "new\nline.png"}


def test_missing_folder_is_a_clean_error(tmp_path):
    result = run_cli("embed", tmp_path / "nope", "--model", "hsv-hist", ok=False)
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_killed_embed_resumes_to_the_same_index(tmp_path, tiny_cnn):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(240):
        draw_character(i % 6, i, size=(160, 160)).save(root / f"{i:03d}.png")
    cmd = [sys.executable, "-m", "illusort.cli", "embed", str(root), "--model", str(tiny_cnn), "-q",
           "--batch-size", "4", "--workers", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = default_index_path(root)
    deadline = time.time() + 60
    rows = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                rows = sqlite3.connect(db).execute("SELECT COUNT(*) FROM items").fetchone()[0]
            except sqlite3.Error:
                rows = 0
        if rows >= 8:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert 8 <= rows < 240, "the run should have been killed part-way"
    resumed = subprocess.run(cmd, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "unchanged" in resumed.stderr and " 0 unchanged" not in resumed.stderr

    fresh = tmp_path / "fresh"
    shutil.copytree(root, fresh, ignore=shutil.ignore_patterns(".illusort"))
    subprocess.run(cmd[:4] + [str(fresh)] + cmd[5:], check=True, capture_output=True)
    model = with_precision(with_faces(load_model(str(tiny_cnn)), "auto"), "auto")
    a = Index(db).embeddings(model.model_id)
    b = Index(default_index_path(fresh)).embeddings(model.model_id)
    assert [r.path for r in a[0]] == [r.path for r in b[0]] and len(a[0]) == 240
    np.testing.assert_allclose(a[1], b[1], atol=1e-5)


def test_bfloat16_rows_are_kept_apart_and_close_to_float32(collection, tiny_cnn):
    root, truth = collection
    for precision in ("float32", "bfloat16"):
        run_cli("embed", root, "--model", tiny_cnn, "--precision", precision, "-q", "--workers", "0")
    faces = with_faces(load_model(str(tiny_cnn)), "auto")
    with Index(default_index_path(root)) as index:
        rows32, v32 = index.embeddings(with_precision(faces, "float32").model_id)
        rows16, v16 = index.embeddings(with_precision(faces, "bfloat16").model_id)
    assert [r.path for r in rows32] == [r.path for r in rows16] and len(rows16) == len(truth)
    assert (np.sum(v32 * v16, axis=1) > 0.99).all() and not np.array_equal(v32, v16)
    np.testing.assert_allclose(np.linalg.norm(v16, axis=1), 1, atol=1e-5)  # a cosine never passes 1
