import numpy as np
import pytest
from sklearn.metrics import adjusted_mutual_info_score

from illusort.cluster import ClusterError, cluster_embeddings, effective_min_cluster_size

from conftest import run_cli


def blobs(characters=6, per_character=8, spread=0.15, seed=0):
    """Unit vectors around random centres: a known truth for clustering."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(characters, 64))
    x = np.repeat(centres, per_character, axis=0) + spread * rng.normal(size=(characters * per_character, 64))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), np.repeat(np.arange(characters),
                                                                                        per_character)


@pytest.mark.parametrize("algorithm, options", [("hdbscan", {"umap_dims": 0}),
                                                ("agglomerative", {"similarity": 0.5})])
def test_both_algorithms_recover_known_groups(algorithm, options):
    x, truth = blobs()
    result = cluster_embeddings(x, algorithm=algorithm, min_cluster_size=3, **options)
    assert adjusted_mutual_info_score(truth, result.labels) > 0.95 and result.n_clusters == 6


def test_agglomerative_calls_small_groups_noise_and_needs_a_threshold():
    x, truth = blobs(characters=4, per_character=5)
    lonely = np.eye(64, dtype=np.float32)[:2]  # two images unlike anything else
    result = cluster_embeddings(np.vstack([x, lonely]), algorithm="agglomerative", similarity=0.5,
                                min_cluster_size=2)
    assert list(result.labels[-2:]) == [-1, -1] and result.n_clusters == 4
    with pytest.raises(ClusterError, match="similarity"):
        cluster_embeddings(x, algorithm="agglomerative")


def test_small_folders_cap_min_cluster_size():
    assert effective_min_cluster_size(40, 10) == 5 and effective_min_cluster_size(5000, 10) == 10
    assert effective_min_cluster_size(3, 10) == 2


def test_cli_agglomerative(collection):
    root, truth = collection
    result = run_cli("cluster", root, "--model", "hsv-hist", "-q", "--workers", "0", "--algorithm",
                     "agglomerative", "--similarity", "0.9", "--min-cluster-size", "3")
    assert "4 clusters" in result.output
    missing = run_cli("cluster", root, "--model", "hsv-hist", "-q", "--algorithm", "agglomerative", ok=False)
    assert "--similarity" in missing.output and "Traceback" not in missing.output
