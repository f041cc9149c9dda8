"""`embed --ray`: the same index as a local run, from a Ray instance the test starts."""
import numpy as np
import pytest

from illusort.index import Index

from conftest import draw_scene, index_key, run_cli

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'illusort[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_embed_matches_a_local_run_and_is_incremental(collection, tmp_path, local_ray):
    root, truth = collection
    for k in range(2):
        draw_scene([0, 1], seed=k, size=(480, 240)).save(root / f"two_{k}.png")  # two faces: two rows
    (root / "broken.png").write_bytes(b"not an image")
    local_db, ray_db = tmp_path / "local.db", tmp_path / "ray.db"
    run_cli("embed", root, "--model", "hsv-hist", "-q", "--workers", "0", "--index", local_db)
    out = run_cli("embed", root, "--model", "hsv-hist", "-q", "--index", ray_db, "--ray", "--batch-size", "8").output
    assert f"{len(truth) + 2} embedded" in out and "1 skipped" in out
    with Index(local_db) as a, Index(ray_db) as b:
        rows_a, vectors_a = a.embeddings(index_key("hsv-hist"))
        rows_b, vectors_b = b.embeddings(index_key("hsv-hist"))
        assert [(r.path, r.face, r.box) for r in rows_a] == [(r.path, r.face, r.box) for r in rows_b]
        assert sum(r.path.startswith("two_") for r in rows_b) == 4
        np.testing.assert_allclose(vectors_a, vectors_b, atol=1e-6)
        assert b.errors(index_key("hsv-hist")) == a.errors(index_key("hsv-hist"))
    again = run_cli("embed", root, "--model", "hsv-hist", "-q", "--index", ray_db, "--ray").output
    assert "0 embedded" in again and f"{len(truth) + 3} unchanged" in again  # the broken file too
