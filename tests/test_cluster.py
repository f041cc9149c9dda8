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
    assert "4 characters" in result.output
    missing = run_cli("cluster", root, "--model", "hsv-hist", "-q", "--algorithm", "agglomerative", ok=False)
    assert "--similarity" in missing.output and "Traceback" not in missing.output


class FakeModel:
    model_id, threshold, card = "fake", 0.5, {}


def test_rerun_reuses_the_clustering_and_places_a_few_new_rows(tmp_path, monkeypatch):
    from illusort import workflow
    from illusort.index import Index

    x, truth = blobs(characters=5, per_character=60)
    keys = [(f"{i}.png", 0) for i in range(len(x))]
    options = {"min_cluster_size": 10, "umap_dims": 0, "seed": 0}
    with Index(tmp_path / "index.db") as index:
        first = workflow.cluster_rows(index, FakeModel(), keys[:280], x[:280], options)
        assert adjusted_mutual_info_score(truth[:280], first.labels) > 0.95

        def no_clustering(*args, **kwargs):
            raise AssertionError("clustered again")

        monkeypatch.setattr(workflow, "cluster_embeddings", no_clustering)
        again = workflow.cluster_rows(index, FakeModel(), keys[:280], x[:280], options)
        assert (again.labels == first.labels).all()
        # 20 new rows (7% of 280): each joins the cluster of its character, nothing else moves
        grown = workflow.cluster_rows(index, FakeModel(), keys, x, options)
        assert (grown.labels[:280] == first.labels).all()
        cluster_of = {t: first.labels[truth[:280] == t][0] for t in range(5)}
        assert [grown.labels[i] for i in range(280, 300)] == [cluster_of[t] for t in truth[280:]]
        monkeypatch.undo()
        # --recluster, or many new rows since the last full run: everything is clustered again
        calls = []
        monkeypatch.setattr(workflow, "cluster_embeddings",
                            lambda *a, **k: calls.append(1) or cluster_embeddings(*a, **k))
        workflow.cluster_rows(index, FakeModel(), keys[:100], x[:100], options, recluster=True)
        assert calls == [1]
        workflow.cluster_rows(index, FakeModel(), keys, x, options)  # 200 new rows after a full run of 100
        assert calls == [1, 1]


@pytest.mark.slow
def test_strictness_splits_look_alikes_and_leaves_more_unsorted():
    rng = np.random.default_rng(0)
    families, own = rng.normal(size=(4, 64)), rng.normal(size=(8, 64))
    centres = np.repeat(families, 2, axis=0) + 0.35 * own  # 8 characters, 4 pairs of look-alikes
    x = np.repeat(centres, 50, axis=0) + 0.12 * rng.normal(size=(400, 64))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    runs = [cluster_embeddings(x, strictness=s, seed=0) for s in (0.0, 0.5, 1.0)]
    assert [r.params["selection"] for r in runs] == ["leaf"] * 3
    assert runs[0].n_clusters <= runs[1].n_clusters <= runs[2].n_clusters and runs[0].n_clusters < runs[2].n_clusters
    assert runs[0].noise_share < runs[2].noise_share
    assert cluster_embeddings(x, strictness=None, seed=0).params["selection"] == "eom"


def test_cli_passes_strictness_and_reclusters_only_when_asked(collection, monkeypatch):
    from illusort import workflow

    root, _ = collection
    calls, real = [], workflow.cluster_embeddings
    monkeypatch.setattr(workflow, "cluster_embeddings", lambda v, **k: calls.append(k) or real(v, **k))
    fast = ("--model", "hsv-hist", "-q", "--workers", "0")
    run_cli("cluster", root, *fast, "--strictness", "0.9")
    run_cli("cluster", root, *fast, "--strictness", "0.9")  # nothing changed: the saved clustering
    run_cli("cluster", root, *fast, "--strictness", "0.9", "--recluster")
    run_cli("sort", root, "--out", root.parent / "out", *fast, "--paper-selection")
    assert [k["strictness"] for k in calls] == [0.9, 0.9, None]


def test_cli_algorithms_are_the_library_ones():
    from click.testing import CliRunner

    from illusort.cli import main
    from illusort.cluster import ALGORITHMS

    assert "[" + "|".join(ALGORITHMS) + "]" in " ".join(CliRunner().invoke(main, ["cluster", "--help"]).output.split())


def test_auto_forms_small_characters_and_the_cache_key_ignores_defaults():
    from illusort.cluster import ClusterOptions

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 24))
    sizes = [3] * 8 + [40] * 4                       # eight characters of 3 pictures, four of 40
    truth = np.repeat(np.arange(12), sizes)
    v = centres[truth] + rng.normal(size=(len(truth), 24)) * 0.15
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    c = cluster_embeddings(v, algorithm="auto", min_cluster_size=None, similarity=0.6)
    assert c.params["algorithm"] == "agglomerative" and c.n_clusters == 12
    # what is not given takes ClusterOptions' default, as the CLI's sort does: `auto` here
    assert cluster_embeddings(v, similarity=0.6).params == c.params
    with pytest.raises(ClusterError, match="unknown clustering option 'min_size'"):
        cluster_embeddings(v, min_size=3)
    with pytest.raises(ClusterError, match="min_cluster_size='3' is not a whole number"):
        cluster_embeddings(v, min_cluster_size="3")
    for bad in ({"algorithm": "kmeans"}, {"strictness": 2.0}, {"min_samples": 0}, {"similarity": float("nan")}):
        with pytest.raises(ClusterError):
            ClusterOptions.of(bad)
    assert cluster_embeddings(v, similarity=np.float32(0.6), seed=np.int64(1)).n_clusters == 12  # numpy numbers
    assert cluster_embeddings(v, algorithm="auto", min_cluster_size=None, similarity=None).params.get(
        "algorithm", "hdbscan") == "hdbscan"             # no calibrated similarity: HDBSCAN
    assert ClusterOptions().key("m") == ClusterOptions(strictness=0.5).key("m")
    assert ClusterOptions().key("m") != ClusterOptions(strictness=0.7).key("m")
    assert ClusterOptions().key("m") != ClusterOptions().key("other model")
