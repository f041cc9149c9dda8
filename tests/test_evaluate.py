"""The scoreboard: `illusort evaluate` and the metrics under it, on tiny synthetic characters."""
from __future__ import annotations

import colorsys
import csv
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

from illusort import metrics
from illusort.evaluate import format_table, labelled_images

from conftest import index_key, run_cli

FAST = ("--model", "hsv-hist", "-q", "--workers", "0", "--umap-dims", "0", "--json")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def draw(character: int, k: int, size=(48, 64)) -> Image.Image:
    """A 'character': a blob of its own hue with a smaller blob of a second one, on white
    (white, not off-white: hue of a near-grey pixel is noise to an HSV histogram)."""
    rng = random.Random(character * 1000 + k)
    hue = ((character * 5) % 12 + 0.5) / 12  # the centre of one of hsv-hist's 12 hue bins

    def colour(h):
        r, g, b = colorsys.hsv_to_rgb((h + rng.uniform(-0.02, 0.02)) % 1.0, 0.62 + rng.uniform(-0.08, 0.08),
                                      0.62 + rng.uniform(-0.08, 0.08))
        return int(r * 255), int(g * 255), int(b * 255)

    w, h = size
    image = Image.new("RGB", size, (255, 255, 255))
    pen = ImageDraw.Draw(image)
    x, y = rng.uniform(0.05, 0.3) * w, rng.uniform(0.05, 0.3) * h
    pen.ellipse([x, y, x + w * rng.uniform(0.5, 0.65), y + h * rng.uniform(0.5, 0.65)], fill=colour(hue))
    x, y = rng.uniform(0.1, 0.6) * w, rng.uniform(0.6, 0.8) * h
    pen.rectangle([x, y, x + w * 0.3, y + h * 0.15], fill=colour(hue + 0.25))
    return image


def make_labelled(root: Path, characters: int = 5, per_character: int = 8, names=None) -> dict[str, str]:
    """root/<character>/<images> (some one level deeper); returns {relative path: character}."""
    names = names or [f"chara-{c}" for c in range(characters)]
    truth = {}
    for c, name in enumerate(names):
        for k in range(per_character):
            folder = root / name / ("extra" if k % 4 == 3 else "")
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{k}.png"
            draw(c, k).save(path)
            truth[path.relative_to(root).as_posix()] = name
    return truth


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval") / "labelled"
    truth = make_labelled(root)
    return root, truth


def evaluate_json(*args, ok=True):
    result = run_cli("evaluate", *args, ok=ok)
    return json.loads(result.stdout) if ok else result


@pytest.fixture(scope="module")
def split_model(tmp_path_factory):
    """An hsv-hist 'checkpoint' with a character split in its card, like `illusort train` writes."""
    from illusort import nets
    from illusort.weights import save_checkpoint

    path = tmp_path_factory.mktemp("models") / "split.pt"
    split = {"seed": 0, "train": ["chara-0", "chara-1"], "dev": ["chara-2"], "test": ["chara-3", "chara-4"]}
    save_checkpoint(path, nets.build("hsv-hist"), {"arch": "hsv-hist", "split": split})
    return path, split


# ---- through the CLI -------------------------------------------------------------------------

def test_evaluate_json_scores_match_sklearn(labelled, tmp_path):
    root, truth = labelled
    out = tmp_path / "report"
    result = evaluate_json(root, *FAST, "--out", out)
    for key in ("ami", "ari", "eer", "threshold", "noise", "clusters", "buckets", "images", "characters",
                "model", "curve"):
        assert key in result
    assert result["images"] == len(truth) and result["characters"] == 5 and result["model"] == index_key("hsv-hist")
    assert result["pairs"] == len(truth) * (len(truth) - 1) // 2  # every pair below 3,000 images
    assert result["buckets"]["5-9"] == {"characters": 5, "images": 40, "eer": result["buckets"]["5-9"]["eer"]}
    assert result["buckets"]["2-4"]["characters"] == 0 and result["buckets"]["2-4"]["eer"] is None
    assert 0 <= result["eer"] < 0.1 and result["ami"] > 0.8  # hsv-hist separates these colours

    with open(result["assignments"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["path"]: r["character"] for r in rows} == truth
    true, predicted = [r["character"] for r in rows], [int(r["cluster"]) for r in rows]
    assert result["ami"] == pytest.approx(adjusted_mutual_info_score(true, predicted), abs=1e-12)
    assert result["ari"] == pytest.approx(adjusted_rand_score(true, predicted), abs=1e-12)
    assert result["clusters"] == len(set(predicted) - {-1})
    assert result["noise"] == pytest.approx(np.mean(np.array(predicted) == -1))

    curve = Path(result["curve"])
    assert curve.parent == out and curve.read_bytes()[:8] == PNG_MAGIC
    with Image.open(curve) as image:
        image.verify()
    assert json.loads(next(out.glob("*-all.json")).read_text())["ami"] == result["ami"]

    again = evaluate_json(root, *FAST, "--out", out)  # reproducible: same index, seeded clustering
    assert (again["ami"], again["eer"]) == (result["ami"], result["eer"])


def test_evaluate_human_table_and_default_out(labelled, tmp_path, monkeypatch):
    root, _ = labelled
    monkeypatch.chdir(tmp_path)
    result = run_cli("evaluate", root, *FAST[:-1])
    for word in ("AMI", "ARI", "noise", "clusters", "EER", "2-4", "5-9", "10-49", "50+"):
        assert word in result.stdout
    assert list((tmp_path / "illusort-eval").glob("*.png"))


def test_loose_and_broken_files_and_out_inside_folder(tmp_path):
    root = tmp_path / "lab"
    truth = make_labelled(root, characters=3, per_character=6)
    draw(0, 99).save(root / "loose.png")
    (root / "chara-1" / "broken.jpg").write_bytes(b"<html>not an image</html>")
    with pytest.warns(UserWarning, match="1 images"):
        assert labelled_images(root) == sorted({**truth, "chara-1/broken.jpg": "chara-1"}.items())
    out = root / "report"  # inside the labelled folder: its files must not become a character
    with pytest.warns(UserWarning, match="not inside a character folder"):
        first = evaluate_json(root, *FAST, "--out", out)
        second = evaluate_json(root, *FAST, "--out", out)
        strict = run_cli("evaluate", root, *FAST, "--out", out, "--strict", ok=None)
    assert first["images"] == second["images"] == len(truth) and second["characters"] == 3
    assert second["skipped"] == 1 and second["skipped_files"][0][0] == "chara-1/broken.jpg"
    assert strict.exit_code == 3 and json.loads(strict.stdout)["ami"] == second["ami"]


def test_characters_test_uses_only_the_split(labelled, split_model, tmp_path):
    root, truth = labelled
    model, split = split_model
    fast = ("--model", model, *FAST[2:])
    result = evaluate_json(root, *fast, "--characters", "test", "--out", tmp_path)
    assert result["characters"] == 2 and result["images"] == 16 and result["trained_on"] == 0
    with open(result["assignments"], newline="") as f:
        assert {r["character"] for r in csv.DictReader(f)} == set(split["test"])
    every = evaluate_json(root, *fast, "--out", tmp_path)
    assert every["images"] == len(truth) and every["trained_on"] == 2
    one = run_cli("evaluate", root, *fast, "--characters", "dev", "--out", tmp_path, ok=False)  # 1 character
    assert "at least two characters" in one.output


def test_characters_test_without_split_is_a_clear_error(labelled, tmp_path):
    root, _ = labelled
    result = evaluate_json(root, *FAST, "--characters", "test", "--out", tmp_path, ok=False)
    assert result.exit_code == 1
    assert "no train/dev/test split" in result.output and "--characters all" in result.output
    assert "Traceback" not in result.output


def test_split_error_comes_before_embedding(tmp_path):
    root = tmp_path / "lab"
    make_labelled(root, characters=2, per_character=3)
    run_cli("evaluate", root, *FAST, "--characters", "dev", "--out", tmp_path / "o", ok=False)
    assert not (root / ".illusort" / "index.db").exists()


def test_missing_folder_and_too_few_characters(tmp_path):
    result = run_cli("evaluate", tmp_path / "nope", *FAST, ok=False)
    assert "does not exist" in result.output
    root = tmp_path / "one"
    make_labelled(root, characters=1, per_character=4)
    result = run_cli("evaluate", root, *FAST, "--out", tmp_path / "o", ok=False)
    assert "at least two characters" in result.output


@pytest.fixture(scope="module")
def tiny_vgg(tmp_path_factory):
    """A randomly initialised VGG16 checkpoint at 32 px input (the layer table's code path)."""
    import torch

    from illusort import nets
    from illusort.weights import save_checkpoint

    torch.manual_seed(0)
    net = nets.build("vgg16", input_size=32)
    path = tmp_path_factory.mktemp("vgg") / "tiny-vgg.pt"
    save_checkpoint(path, net, {"arch": "vgg16", "embed_dim": None, "layer": "fc1", "input_size": 32}, half=True)
    return path


def test_all_layers_table(labelled, tiny_vgg, tmp_path):
    from illusort.nets import VGG_LAYERS

    root = tmp_path / "labelled"
    shutil.copytree(labelled[0], root, ignore=shutil.ignore_patterns(".illusort"))
    truth = labelled[1]
    (root / "chara-2" / "broken.png").write_bytes(b"\x89PNG truncated")
    out = tmp_path / "layers"
    args = ("--model", tiny_vgg, "--all-layers", "-q", "--umap-dims", "0", "--batch-size", "16", "--out", out)
    result = evaluate_json(root, *args, "--workers", "1", "--json")
    assert list(result["layers"]) == list(VGG_LAYERS)
    dims = {"conv1": 64, "conv2": 128, "conv3": 256, "conv4": 512, "conv5": 512, "fc1": 4096, "fc2": 4096}
    for name, row in result["layers"].items():
        assert row["dim"] == dims[name]
        assert -1 <= row["ami"] <= 1 and 0 <= row["eer"] <= 1 and "buckets" in row
        assert Path(row["curve"]).read_bytes()[:8] == PNG_MAGIC
    assert result["images"] == len(truth) and result["skipped_files"][0][0] == "chara-2/broken.png"

    # fc1 of the table equals the model's own fc1 embedding through the index (one pass == separate pass)
    single = evaluate_json(root, "--model", tiny_vgg, "-q", "--workers", "0", "--umap-dims", "0", "--json",
                           "--precision", "float32", "--out", tmp_path / "single")  # the table's pass is float32
    assert single["eer"] == pytest.approx(result["layers"]["fc1"]["eer"], abs=1e-4)

    human = format_table(result)  # what the CLI prints without --json (no third model load)
    assert all(name in human for name in VGG_LAYERS) and "AMI" in human


def test_all_layers_needs_vgg(labelled, tmp_path):
    root, _ = labelled
    result = run_cli("evaluate", root, *FAST, "--all-layers", "--out", tmp_path, ok=False)
    assert "needs a VGG16 model" in result.output


# ---- the metrics themselves --------------------------------------------------------------------

def test_eer_exact_on_hand_made_scores():
    rate, threshold = metrics.eer([0.9, 0.8, 0.3, 0.1], [True, True, False, False])
    assert rate == 0.0 and 0.3 < threshold <= 0.8
    rate, _ = metrics.eer([0.9, 0.4, 0.6, 0.2], [True, True, False, False])
    assert rate == pytest.approx(0.5)
    with pytest.raises(ValueError):
        metrics.eer([0.5, 0.4], [True, True])


def test_threshold_at_far_accepts_at_most_that_share_of_impostors():
    impostors = np.arange(100.0)  # 100 different-character pairs scoring 0..99
    scores = np.concatenate([impostors, [95.5, 97.5]])
    same = np.array([False] * 100 + [True, True])
    assert metrics.threshold_at_far(scores, same, 0.01) == 99  # one impostor of 100 still accepted
    assert metrics.threshold_at_far(scores, same, 0.05) == 95
    assert metrics.threshold_at_far(scores, same, 0.0) > 99


def test_more_than_127_characters_stay_distinct():
    labels = [c for c in range(300) for _ in range(2)]
    assert len(np.unique(metrics.label_codes(labels))) == 300
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(600, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    result = metrics.embedding_eer(vectors, labels)
    assert result["buckets"]["2-4"]["characters"] == 300 and result["buckets"]["2-4"]["images"] == 600
    assert result["buckets"]["5-9"] == {"characters": 0, "images": 0, "eer": None}
    assert result["pairs"] == 600 * 599 // 2
    i, j, same = metrics.sample_pairs(labels)
    assert same.sum() == 300  # 200 would be int8 wrap-around merging characters 44 apart
    assert metrics.clustering_scores(labels, np.array(labels))["ami"] == pytest.approx(1.0)


def test_sample_pairs_above_3000_images():
    labels = [f"c{c}" for c in range(700) for _ in range(5)]  # 3,500 images
    i, j, same = metrics.sample_pairs(labels, seed=3)
    assert len(i) == len(j) == 20_000 and same.sum() == 10_000 and (~same).sum() == 10_000
    assert not np.any(i == j)
    codes = np.asarray(labels)
    assert np.array_equal(codes[i] == codes[j], same)
    again = metrics.sample_pairs(labels, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((i, j, same), again))
    other = metrics.sample_pairs(labels, seed=4)
    assert not np.array_equal(i, other[0])


def test_within_source_pairs_never_cross_sources_and_cross_pairs_flatter():
    """Two 'games': inside each, characters are look-alikes; across games everything differs.
    The within-source EER must see only the hard pairs; the all-pairs EER is flattered."""
    rng = np.random.default_rng(0)
    labels, vectors = [], []
    for game in range(2):
        style = rng.normal(size=16) * 4          # the house style: shared by the game's characters
        for c in range(6):
            centre = style + rng.normal(size=16) * 0.7
            for _ in range(4):
                labels.append(f"game{game}/c{c}")
                vectors.append(centre + rng.normal(size=16))
    v = np.array(vectors, np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    i, j, same = metrics.within_pairs(labels, [metrics.source_of(x) for x in labels])
    src = np.array([metrics.source_of(x) for x in labels])
    assert np.all(src[i] == src[j]) and len(i) == 2 * (24 * 23 // 2)
    result = metrics.source_scores(v, labels)
    assert result["within_source"] and set(result["per_source"]) == {"game0", "game1"}
    assert result["eer"] > result["all_pairs_eer"]
    assert result["mean_source_eer"] == pytest.approx(np.mean([s["eer"] for s in result["per_source"].values()]))


def test_evaluate_prints_within_source_headline(tmp_path):
    for source in ("gameA", "gameB"):
        make_labelled(tmp_path / "data" / source, characters=3, per_character=4)
    result = run_cli("evaluate", tmp_path / "data", "--label-depth", "2", "--model", "hsv-hist", "-q",
                     "--workers", "0", "--umap-dims", "0", "--out", tmp_path / "ev")
    assert "inside one source" in result.output and "all pairs" in result.output
    assert "gameA" in result.output and "gameB" in result.output


def test_each_source_weighs_the_same():
    """A large source that is easy must not hide a small one that is hard."""
    rng = np.random.default_rng(1)
    labels, vectors = [], []
    for c in range(10):                      # 'big': 10 characters x 20, well apart
        centre = rng.normal(size=32) * 3
        for _ in range(20):
            labels.append(f"big/c{c}")
            vectors.append(centre + rng.normal(size=32) * 0.3)
    for c in range(3):                       # 'small': 3 characters x 3, pure noise
        for _ in range(3):
            labels.append(f"small/c{c}")
            vectors.append(rng.normal(size=32))
    v = np.array(vectors, np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    groups = [metrics.source_of(x) for x in labels]
    balanced = metrics.embedding_eer(v, labels, groups=groups)["eer"]
    scores, same = metrics.pair_scores(v, labels, groups=groups)
    pooled = metrics.eer(scores, same)[0]
    per_source = metrics.source_scores(v, labels)["per_source"]
    assert pooled < 0.02 < per_source["small"]["eer"]
    assert balanced > pooled + 0.05          # the small source counts as much as the big one
    weights = metrics.group_weights(metrics.within_pairs(labels, groups)[0], same, groups)
    src = np.array(groups)[metrics.within_pairs(labels, groups)[0]]
    for g in ("big", "small"):
        assert weights[(src == g) & same].sum() == pytest.approx(1.0)
        assert weights[(src == g) & ~same].sum() == pytest.approx(1.0)
