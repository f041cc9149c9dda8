"""The fast paths of issue 14 give the results of the slow ones: the vector cache beside the
index (invalidated by every change), reduced-scale decoding (right size and orientation),
cheap face detection, exact neighbours for UMAP, and `--precision auto`. No timings here."""
from __future__ import annotations

import io
import sqlite3

import numpy as np
import pytest
from PIL import Image

from conftest import draw_scene, make_collection, run_cli
from illusort import faces
from illusort.index import Index, Row, default_index_path
from illusort.query import rank


# ---- vector cache --------------------------------------------------------------------------

def put(index, path, vector, faces_=1):
    index.put("m", path, 1, 1, path, [Row(path, f, None if f == 0 else [0, 0, 9, 9],
                                         vector if f == 0 else -vector) for f in range(faces_)])


def unit(rng, n=1, d=16):
    v = rng.normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def assert_same_as_index(index, model="m"):
    rows, slow = index.embeddings(model)
    keys, fast = index.search_vectors(model)
    assert [(r.path, r.face) for r in rows] == [keys[i] for i in range(len(keys))]
    assert fast.dtype == np.float32 and np.array_equal(np.asarray(fast), slow)
    if len(rows):
        reference = slow[:1] + 0.1
        reference /= np.linalg.norm(reference)
        assert rank(reference, slow, threshold=-1) == rank(reference, fast, threshold=-1)
    return keys, fast


def test_vector_cache_follows_every_change_to_the_index(tmp_path):
    rng = np.random.default_rng(0)
    db = tmp_path / "index.db"
    with Index(db) as index:
        assert len(index.search_vectors("m")[0]) == 0
        for i in range(30):
            put(index, f"a/{i:02d}.png", unit(rng)[0], faces_=1 + i % 3)
        index.commit()
        assert_same_as_index(index)
        meta = sorted((db.parent / "index.db.vectors").glob("*.json"))
        assert len(meta) == 1  # the cache was written beside the index
        put(index, "a/new.png", unit(rng)[0])  # add
        index.commit()
        assert_same_as_index(index)
        index.remove("m", ["a/03.png", "a/04.png"])  # remove
        index.commit()
        keys, _ = assert_same_as_index(index)
        assert "a/03.png" not in {keys[i][0] for i in range(len(keys))}
        put(index, "a/05.png", unit(rng)[0], faces_=2)  # change a vector and the number of faces
        index.commit()
        assert_same_as_index(index)
        index.put("m", "a/bad.png", 1, 1, None, [Row("a/bad.png", 0, None, None, "broken")])  # a skipped file
        index.commit()
        assert_same_as_index(index)
    # another writer (another process, or an older illusort without the cache) changes a row
    raw = sqlite3.connect(db)
    raw.execute("UPDATE items SET vector=? WHERE path=? AND face=0", (unit(rng)[0].tobytes(), b"a/07.png"))
    raw.execute("DELETE FROM items WHERE path=?", (b"a/08.png",))
    raw.commit()
    raw.close()
    with Index(db) as index:
        assert_same_as_index(index)
        put(index, "b/x.png", unit(rng)[0])
        index.commit()
        assert_same_as_index(index)
        assert len(list((db.parent / "index.db.vectors").glob("*.npy"))) == 4  # old versions removed


def test_vector_cache_is_per_model_and_survives_a_lost_file(tmp_path):
    rng = np.random.default_rng(1)
    with Index(tmp_path / "index.db") as index:
        for i in range(5):
            put(index, f"{i}.png", unit(rng)[0])
            index.put("other", f"{i}.png", 1, 1, "d", [Row(f"{i}.png", 0, None, unit(rng, d=8)[0])])
        index.commit()
        assert_same_as_index(index, "m")
        assert_same_as_index(index, "other")
        for npy in (tmp_path / "index.db.vectors").glob("*.npy"):
            npy.unlink()
        assert_same_as_index(index, "m")  # rebuilt, not an error
        stamp = index.stamp()
        index.clustering("nothing")  # reading does not change the stamp
        assert index.stamp() == stamp


def test_query_without_update_equals_the_uncached_path(tmp_path, monkeypatch):
    root = tmp_path / "pictures"
    make_collection(root, characters=3, per_character=6)
    run_cli("embed", root, "--model", "hsv-hist", "-q", "--workers", "0")
    reference = next(root.rglob("*.png"))

    def query():
        return run_cli("query", reference, "--in", root, "--model", "hsv-hist", "--no-update", "--threshold", "0.5",
                       "--json").output

    fast = query()
    assert (default_index_path(root).parent / "index.db.vectors").is_dir()
    monkeypatch.setenv("ILLUSORT_SLOW", "vcache")
    slow = query()
    assert fast == slow and reference.name in fast


# ---- decoding at reduced scale -------------------------------------------------------------

def encoded(image, fmt, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def picture(w=1800, h=1000):
    """Left half red, right half blue, a green bar along the top: orientation is visible."""
    image = Image.new("RGB", (w, h), (200, 30, 30))
    image.paste((30, 30, 200), (w // 2, 0, w, h))
    image.paste((30, 200, 30), (0, 0, w, h // 10))
    return image


def test_draft_and_reduce_keep_size_and_orientation():
    from illusort.images import decode, open_image

    source = picture()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers turn it a quarter
    for fmt, kw in (("JPEG", {"quality": 92, "exif": exif}), ("PNG", {"exif": exif}), ("WEBP", {"exif": exif})):
        data = encoded(source, fmt, **kw)
        full = open_image(data)
        small, full_size = decode(data, max_side=256)
        assert full.size == (1000, 1800) == full_size, fmt  # rotated
        assert min(small.size) >= 256 and max(small.size) < max(full.size) / 1.9, (fmt, small.size)
        assert abs(small.width / small.height - full.width / full.height) < 0.02
        expected = np.asarray(full.resize(small.size, Image.BILINEAR), np.float32)
        assert np.abs(np.asarray(small, np.float32) - expected).mean() < 6, fmt
    small = open_image(encoded(Image.new("RGB", (300, 200)), "PNG"), max_side=256)
    assert small.size == (300, 200)  # nothing to gain: kept as it is


def test_face_crops_of_a_large_jpeg_match_the_full_decoding(tmp_path, monkeypatch):
    from illusort.embed import load_crops

    scene = draw_scene([0, 2], seed=1, size=(1600, 1200), face=440)
    path = tmp_path / "scene.jpg"
    scene.save(path, quality=95)
    results = {}
    for slow in ("", "draft,faces"):
        monkeypatch.setenv("ILLUSORT_SLOW", slow)
        results[slow] = load_crops(path, 128, "auto")
    (digest, fast), (digest_slow, slow) = results[""], results["draft,faces"]
    assert digest == digest_slow and len(fast) == len(slow) == 2
    for (box, tensor), (box_slow, tensor_slow) in zip(fast, slow):
        assert box is not None and max(abs(a - b) for a, b in zip(box, box_slow)) <= 12  # pixels of 1600
        assert tensor.shape == tensor_slow.shape == (3, 128, 128)
        assert np.abs(tensor.numpy().astype(float) - tensor_slow.numpy().astype(float)).mean() < 8


# ---- face detection that cannot change the answer ------------------------------------------

def test_filled_icons_are_kept_whole_without_a_full_detection(monkeypatch):
    icon = faces.draw_face(600)
    scene = draw_scene([0, 2], seed=1, size=(800, 600), face=220)
    for slow in ("faces", ""):
        monkeypatch.setenv("ILLUSORT_SLOW", slow)
        assert faces.face_boxes(icon, "auto") == [None]
        assert faces.face_boxes(faces.draw_face(90), "auto") == [None]
    monkeypatch.setenv("ILLUSORT_SLOW", "faces")
    expected = faces.face_boxes(scene, "auto")
    monkeypatch.setenv("ILLUSORT_SLOW", "")
    assert faces.face_boxes(scene, "auto") == expected and len(expected) == 2
    assert faces.face_boxes(faces.draw_face(256), "always") != [None]  # `always` still crops a face that fills the picture


# ---- clustering start-up --------------------------------------------------------------------

def test_exact_neighbours_are_umaps_small_data_neighbours():
    from illusort.cluster import exact_neighbours

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 12)).astype(np.float32)
    indices, distances = exact_neighbours(x, 5)
    unit_x = x / np.linalg.norm(x, axis=1, keepdims=True)
    full = 1 - unit_x.astype(np.float64) @ unit_x.T.astype(np.float64)
    np.fill_diagonal(full, 0)
    assert (indices[:, 0] == np.arange(60)).all() and np.allclose(distances[:, 0], 0)
    assert np.allclose(distances, np.sort(full, axis=1)[:, :5], atol=1e-6)
    assert (np.diff(distances, axis=1) >= 0).all()


def test_numba_cache_goes_to_the_user_cache_unless_chosen(monkeypatch, tmp_path):
    from illusort import cluster

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cluster.numba_cache_dir() == str(tmp_path / "illusort" / "numba")
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/chosen")
    cluster.use_numba_cache()
    import os

    assert os.environ["NUMBA_CACHE_DIR"] == "/somewhere/chosen"


# ---- precision auto ------------------------------------------------------------------------

@pytest.mark.parametrize("flags, expected", [("fpu sse avx2 avx512f avx512_bf16 amx_tile", True),
                                             ("fpu sse avx2 amx_bf16 amx_tile", True),
                                             ("fpu sse avx2 avx512f avx512_vnni", False)])
def test_precision_auto_follows_the_cpu_flags(tmp_path, flags, expected):
    from illusort.weights import native_bf16

    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert native_bf16("cpu", str(info)) is expected
    assert native_bf16("cpu", str(tmp_path / "absent")) is False
    assert native_bf16("mps") is False


def test_precision_auto_resolves_to_a_concrete_precision_kept_apart_in_the_index():
    from illusort.weights import load_model, native_bf16, with_precision

    model = load_model("hsv-hist")
    auto = with_precision(model, "auto")
    assert auto.precision == ("bfloat16" if native_bf16("cpu") else "float32")
    assert auto.model_id == with_precision(model, auto.precision).model_id
    assert with_precision(model, "float32").model_id != with_precision(model, "bfloat16").model_id
