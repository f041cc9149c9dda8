"""Training: the blog's batch sampler, the character split, and one short run of every method
through the CLI (checkpoint + card that `embed` loads, resume, Ctrl-C). Tiny synthetic data
at 32 px, random initialisation (no network)."""
import json
import os
import signal
from collections import Counter

import pytest
import torch

from illusort.train.data import Augment, Item, scan_folders, split_characters
from illusort.train.sampler import BlogBatchSampler

from conftest import draw_character, run_cli

pytestmark = pytest.mark.slow  # kills, fuzzing or training: `pytest -m 'not slow'` skips them

FAST = ["--init", "none", "--input-size", "32", "--epochs", "1", "--workers", "0", "-q", "--faces", "off"]
TRIPLET = ["--batch-size", "12", "--per-class", "4", "--random-extra", "6"]


def make_labelled(root, characters=10, per_character=6):
    for c in range(characters):
        folder = root / f"char{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_character):
            draw_character(c, k, size=(40, 48)).save(folder / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    return make_labelled(tmp_path_factory.mktemp("train") / "chars")


@pytest.fixture(autouse=True)
def _drop_checkpoints(tmp_path):
    """Checkpoints are tens to hundreds of MB: don't leave them in pytest's kept temp folders."""
    yield
    for path in list(tmp_path.rglob("*.pt")):
        path.unlink()


def card_of(path):
    return json.loads(path.with_suffix(".json").read_text())


def log_lines(path):
    return [json.loads(line) for line in path.with_suffix(".log.jsonl").read_text().splitlines()]


def embed_with(folder, model, tmp_path):
    out = run_cli("embed", folder, "--model", model, "--index", tmp_path / "index.db", "-q", "--workers", "0")
    assert " 0 skipped" in out.output


# ---- the blog's sampler ---------------------------------------------------------------------

def sampler_labels():
    counts = {"a": 1, "b": 2, "c": 3, "d": 5, "e": 7, "f": 13, "g": 25, "h": 4, "i": 9, "j": 2, "k": 30, "l": 6}
    return [name for name, n in counts.items() for _ in range(n)], counts


def test_sampler_batches_follow_the_blog_rules():
    labels, counts = sampler_labels()
    per_class, class_images, extra = 4, 12, 5
    sampler = BlogBatchSampler(labels, per_class=per_class, class_images=class_images, random_extra=extra, seed=3)
    used = set()
    for epoch in range(8):
        sampler.set_epoch(epoch)
        parts = sampler.parts()
        assert len(sampler) == len(parts) == len(list(iter(sampler)))
        visited = Counter()
        for n, (part, rest) in enumerate(parts):
            per_char = Counter(labels[i] for i in part)
            assert max(per_char.values()) <= per_class                      # <= per_class per character
            assert len(part) <= class_images                                # about class_images ...
            if n < len(parts) - 1:
                assert len(part) > class_images - per_class                 # ... filled up to it
            assert len(rest) == extra and len(set(rest)) == extra           # random extra images,
            assert not {labels[i] for i in rest} & set(per_char)            # of other characters
            assert len(set(part)) == len(part)
            visited.update(per_char.keys())
            used.update(part)
        assert set(visited) == set(counts) and set(visited.values()) == {1}  # every character once an epoch
    # characters with more than per_class images: all of them used across epochs (30/4 -> 8 epochs)
    assert used == set(range(len(labels)))


def test_sampler_is_deterministic_and_a_batch_sampler():
    labels, _ = sampler_labels()
    a = BlogBatchSampler(labels, per_class=4, class_images=12, random_extra=5, seed=1)
    b = BlogBatchSampler(labels, per_class=4, class_images=12, random_extra=5, seed=1)
    assert a.batches(2) == b.batches(2)
    assert a.batches(2) != a.batches(3)
    assert a.batches(0) != BlogBatchSampler(labels, 4, 12, 5, seed=2).batches(0)
    loader = torch.utils.data.DataLoader(torch.arange(len(labels)), batch_sampler=a)
    assert [x.tolist() for x in loader] == a.batches(0)
    # defaults are the blog's: 10 per character, ~100 from characters, 100 random others
    big = [str(i // 12) for i in range(12 * 60)]
    part, rest = BlogBatchSampler(big).parts(0)[0]
    assert 90 < len(part) <= 100 and len(rest) == 100


# ---- data --------------------------------------------------------------------------------------

def test_split_is_by_character_and_recorded_labels_match_evaluate(tmp_path):
    items = [Item(tmp_path / f"{c}/{k}.png", f"c{c}", "src") for c in range(10) for k in range(4)]
    items += [Item(tmp_path / "lonely/0.png", "lonely", "src")]
    split = split_characters(items, seed=5)
    assert (len(split["train"]), len(split["dev"]), len(split["test"])) == (7, 2, 2)  # 6:2:2 + the 1-image one
    assert "lonely" in split["train"]
    assert not set(split["train"]) & set(split["dev"]) and not set(split["dev"]) & set(split["test"])
    assert split == split_characters(items, seed=5) and split != split_characters(items, seed=6)

    one = make_labelled(tmp_path / "one", 3, 2)
    two = make_labelled(tmp_path / "two", 2, 2)
    (tmp_path / "flat").mkdir()
    draw_character(0, 0).save(tmp_path / "flat" / "x.png")
    single, _ = scan_folders([one])
    assert {it.label for it in single.items} == {"char0", "char1", "char2"}  # as `evaluate one` sees them
    both, _ = scan_folders([one, two, tmp_path / "flat"])
    labels = {it.label for it in both.items}
    assert labels == {"one/char0", "one/char1", "one/char2", "two/char0", "two/char1", None}  # never merged


def test_augment_keeps_range_and_is_seeded():
    images = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
    a = Augment()(images, 32, torch.Generator().manual_seed(1))
    b = Augment()(images, 32, torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 32, 32) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)


# ---- training through the CLI ----------------------------------------------------------------

def test_triplet_trains_embeds_and_resumes(labelled, tmp_path):
    out = tmp_path / "models" / "trip.pt"
    result = run_cli("train", labelled, "--out", out, *FAST, *TRIPLET)
    assert "dev EER" in result.output
    card = card_of(out)
    assert card["trained"] and card["method"] == "triplet" and card["arch"] == "resnet18"
    assert card["embed_dim"] == 500 and card["input_size"] == 32 and card["epochs"] == 1
    split = card["split"]
    assert split["seed"] == 0 and len(split["train"]) == 6 and len(split["dev"]) == 2 and len(split["test"]) == 2
    assert set(split["train"]) | set(split["dev"]) | set(split["test"]) == {f"char{c}" for c in range(10)}
    assert isinstance(card["threshold"], float) and isinstance(card["known_threshold"], float)
    assert card["metrics"]["dev"]["eer"] is not None and card["metrics"]["test"]["eer"] is not None
    assert "ami" in card["metrics"]["test"]["clustering"]
    assert card["data"]["images"] == {"train": 36, "dev": 12, "test": 12}
    assert card["hyper"]["margin"] == 0.1 and card["hyper"]["random_extra"] == 6
    assert [e["epoch"] for e in log_lines(out)] == [1]
    embed_with(labelled, out, tmp_path)

    # the same command again refuses to overwrite; --resume continues to epoch 2
    again = run_cli("train", labelled, "--out", out, *FAST, *TRIPLET, ok=False)
    assert "--resume" in again.output and "Traceback" not in again.output
    result = run_cli("train", labelled, "--out", out, "--resume", "--epochs", "2", "-q", "--workers", "0",
                     "--input-size", "48")
    assert "resuming" in result.output
    assert "--input-size ignored: a resumed run keeps the settings" in result.output
    assert card_of(out)["epochs"] == 2 and card_of(out)["input_size"] == 32
    assert [e["epoch"] for e in log_lines(out)] == [1, 2]
    assert card_of(out)["split"] == split
    # the first command again, with --resume: the settings it repeats are not "ignored"
    result = run_cli("train", labelled, "--out", out, *FAST, *TRIPLET, "--resume", "--epochs", "3")
    assert "ignored" not in result.output and card_of(out)["epochs"] == 3


def test_split_from_keeps_the_unseen_characters_when_data_grows(labelled, tmp_path):
    first = tmp_path / "first.pt"
    run_cli("train", labelled, "--out", first, *FAST, *TRIPLET)
    split = card_of(first)["split"]
    grown = tmp_path / "grown"
    grown.mkdir()
    for c in range(10):
        (grown / f"char{c}").symlink_to(labelled / f"char{c}")
    make_labelled(tmp_path / "extra", 14, 3)  # 4 new characters (char10..13), and char0..9 drawn again
    for c in range(10, 14):
        (tmp_path / "extra" / f"char{c}").rename(grown / f"char{c}")
    assert split_characters(scan_folders([grown])[0].items)["test"] != split["test"]  # a fresh split moves
    out = tmp_path / "grown.pt"
    run_cli("train", grown, "--split-from", first, "--out", out, *FAST, *TRIPLET)
    kept = card_of(out)["split"]
    assert kept["dev"] == split["dev"] and kept["test"] == split["test"]
    assert set(kept["train"]) == set(split["train"]) | {f"char{c}" for c in range(10, 14)}
    assert card_of(out)["data"]["images"]["train"] == 36 + 4 * 3

    for bad, message in ((tmp_path / "none.pt", "no such model"), (labelled / "char0" / "0.png", "not a loadable")):
        result = run_cli("train", grown, "--split-from", bad, "--out", tmp_path / "x.pt", *FAST, ok=False)
        assert message in result.output and "Traceback" not in result.output
    other = make_labelled(tmp_path / "other", 4, 2)
    for c in range(4):
        (other / f"char{c}").rename(other / f"other{c}")
    result = run_cli("train", other, "--split-from", first, "--out", tmp_path / "y.pt", *FAST, ok=False)
    assert "none of its dev characters" in result.output
    for damaged, message in (({**split, "test": split["test"] + split["dev"][:1]}, "both dev and test"),
                             ({**split, "dev": [["char1"]]}, "holds no train/dev/test split")):
        bad = tmp_path / "damaged.pt"
        bad.write_bytes(first.read_bytes())
        bad.with_suffix(".json").write_text(json.dumps({**card_of(first), "split": damaged}))
        result = run_cli("train", grown, "--split-from", bad, "--out", tmp_path / "z.pt", *FAST, ok=False)
        assert message in result.output and "Traceback" not in result.output

    # a new "character" made of links to a test character's pictures: those pictures never train
    held = split["test"][0]
    (grown / "linked").mkdir()
    for k in range(3):
        (grown / "linked" / f"{k}.png").symlink_to(labelled / held / f"{k}.png")
    out = tmp_path / "linked.pt"
    result = run_cli("train", grown, "--split-from", first, "--out", out, *FAST, *TRIPLET)
    assert "3 training pictures are also dev/test pictures" in result.output
    assert card_of(out)["split"]["test"] == split["test"] and card_of(out)["data"]["images"]["train"] == 36 + 4 * 3


def test_finetune_then_ft_plus_dc(labelled, tmp_path):
    ft = tmp_path / "ft.pt"
    run_cli("train", labelled, "--method", "finetune", "--arch", "resnet18", "--batch-size", "12",
            "--out", ft, *FAST)
    card = card_of(ft)
    assert card["method"] == "finetune" and card["embed_dim"] is None and card["threshold"] is not None
    ftdc = tmp_path / "ftdc.pt"
    run_cli("train", labelled, "--method", "ft+dc", "--init", ft, "--batch-size", "12", "--out", ftdc,
            *[a for a in FAST if a not in ("--init", "none")])
    card = card_of(ftdc)
    assert card["method"] == "ft+dc" and card["arch"] == "resnet18"       # arch comes from the checkpoint
    assert card["parent"]["method"] == "finetune" and card["init"] == str(ft)
    assert card["hyper"]["k_used"] == 36 // 4 and card["hyper"]["lr"] == 1e-4
    assert card["split"] == card_of(ft)["split"]                          # same seed, same characters
    embed_with(labelled, ftdc, tmp_path)


def test_deepcluster_vgg16_on_unlabelled_folder_with_dev(labelled, tmp_path):
    flat = tmp_path / "pool"
    flat.mkdir()
    for c in range(6):
        for k in range(4):
            draw_character(c, 100 + k, size=(40, 48)).save(flat / f"{c}_{k}.png")
    out = tmp_path / "dc.pt"
    run_cli("train", flat, "--method", "deepcluster", "--dev", labelled, "--batch-size", "8", "--out", out, *FAST)
    card = card_of(out)
    assert card["arch"] == "vgg16" and card["layer"] == "fc1" and card["hyper"]["train_layer"] == "fc2"
    assert card["data"]["unlabelled_images"] == 24 and card["data"]["images"]["dev"] == 60
    assert card["hyper"]["k_used"] == 6 and card["threshold"] is not None
    assert len(card["split"]["dev"]) == 10 and card["split"]["test"] == []
    embed_with(labelled, out, tmp_path)


@pytest.mark.parametrize("loss", ["multi-similarity", "arcface", "subcenter-arcface"])
def test_lite0_imagenet_init_with_other_losses(labelled, tmp_path, loss):
    out = tmp_path / "lite.pt"
    run_cli("train", labelled, "--init", "lite0", "--out", out, "--input-size", "32", "--epochs", "1",
            "--workers", "0", "-q", "--loss", loss, "--optimizer", "adamw", *TRIPLET)
    card = card_of(out)
    assert card["arch"] == "lite0" and card["init"] == "lite0" and card["hyper"]["loss"] == loss
    assert card["hyper"]["optimizer"] == "adamw"
    assert [e["loss"] > 0 for e in log_lines(out)] == [True]
    if loss == "subcenter-arcface":  # the class centres are trained and kept for --resume
        centres = torch.load(out.with_suffix(".last.pt"), weights_only=True)["resume"]["strategy"]["loss"]["W"]
        assert centres.shape[0] == card["embed_dim"]
    embed_with(labelled, out, tmp_path)


def test_ctrl_c_saves_and_resume_matches_an_uninterrupted_run(labelled, tmp_path, monkeypatch):
    from illusort.train import loop

    args = ["--per-class", "3", "--batch-size", "8", "--random-extra", "4", "--epochs", "2", "--init", "none",
            "--input-size", "32", "--workers", "0", "-q"]
    run_cli("train", labelled, "--out", tmp_path / "full.pt", *args)

    calls, original = [0], loop.Augment.__call__

    def interrupting(self, *a, **k):
        calls[0] += 1
        if calls[0] == 5:  # in the middle of epoch 2
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, *a, **k)

    monkeypatch.setattr(loop.Augment, "__call__", interrupting)
    part = tmp_path / "part.pt"
    result = run_cli("train", labelled, "--out", part, *args, ok=None)
    assert result.exit_code == 130 and "--resume" in result.output
    state = torch.load(loop.last_path(part), weights_only=True)["resume"]
    assert (state["epoch"], state["batch"]) == (1, 2)
    monkeypatch.setattr(loop.Augment, "__call__", original)
    run_cli("train", labelled, "--out", part, "--resume", "-q", "--workers", "0")
    a = torch.load(loop.last_path(tmp_path / "full.pt"), weights_only=True)["state_dict"]
    b = torch.load(loop.last_path(part), weights_only=True)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
    assert [e["epoch"] for e in log_lines(part)] == [1, 2]


def test_clear_errors(labelled, tmp_path, monkeypatch):
    from illusort.nets import backbones

    def offline(weights):
        raise backbones.WeightsUnavailable(f"ImageNet weights {weights} are not cached; use --init lite0 or none.")

    monkeypatch.setattr(backbones, "_torchvision_weights", offline)
    # the default start is the shipped model (offline, issue 11); ImageNet weights are asked for by name
    result = run_cli("train", labelled, "--init", "imagenet", "--out", tmp_path / "x.pt", "--input-size", "32",
                     ok=False)
    assert result.exit_code == 1 and "not cached" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    result = run_cli("train", labelled, "--method", "ft+dc", "--out", tmp_path / "y.pt", *FAST, ok=False)
    assert "--init PATH" in result.output
    flat = tmp_path / "flat"
    flat.mkdir()
    draw_character(0, 0).save(flat / "a.png")
    draw_character(1, 0).save(flat / "b.png")
    result = run_cli("train", flat, "--out", tmp_path / "z.pt", *FAST, ok=False)
    assert "labelled" in result.output
    result = run_cli("train", labelled, "--out", tmp_path / "none.pt", "--resume", ok=False)
    assert "nothing to resume" in result.output
    from illusort import nets
    from illusort.weights import save_checkpoint

    members = [nets.build("resnet18", embed_dim=4, input_size=32) for _ in range(2)]
    save_checkpoint(tmp_path / "pair.pt", nets.Ensemble(members, [1, 1]),
                    {"arch": "ensemble", "members": [{"arch": "resnet18", "embed_dim": 4, "input_size": 32}] * 2,
                     "shares": [1, 1]})
    result = run_cli("train", labelled, "--init", tmp_path / "pair.pt", "--out", tmp_path / "p2.pt", *FAST[2:], ok=False)
    assert "ensemble of trained models" in result.output and "Traceback" not in result.output


def test_train_on_face_crops(tmp_path, monkeypatch):
    from conftest import draw_scene

    from illusort import embed

    root = tmp_path / "scenes"
    for kind in range(5):
        (root / f"chara-{kind}").mkdir(parents=True)
        for k in range(4):
            draw_scene([kind % 3], seed=10 * kind + k).save(root / f"chara-{kind}" / f"{k}.png")
    boxes, crops = [], embed.crops

    def recorded(image, size, faces="off"):
        result = crops(image, size, faces)
        boxes.append(result[0][0])
        return result

    monkeypatch.setattr(embed, "crops", recorded)
    out = tmp_path / "faces.pt"
    run_cli("train", root, "--out", out, *FAST, *TRIPLET, "--faces", "always")
    assert card_of(out)["hyper"]["faces"] == "always"
    assert len(boxes) == 20 and all(box is not None for box in boxes), "every training image cut to its face"


def test_source_batches_keep_each_batch_inside_one_source():
    labels = [f"s{s}/c{c}" for s in range(3) for c in range(6) for _ in range(5)]
    groups = [x.split("/")[0] for x in labels]
    sampler = BlogBatchSampler(labels, per_class=3, class_images=9, random_extra=4, seed=0, groups=groups)
    seen = set()
    for part, extra in sampler.parts(0):
        assert len({groups[i] for i in part + extra}) == 1       # characters and negatives: one source
        assert not {labels[i] for i in extra} & {labels[i] for i in part}
        seen |= {labels[i] for i in part}
    assert seen == set(labels)                                     # every character once per epoch
    assert sampler.parts(0) == BlogBatchSampler(labels, 3, 9, 4, seed=0, groups=groups).parts(0)


def test_unlabelled_images_join_batches_only_as_negatives():
    labels, counts = sampler_labels()
    pool = [None] * 20
    plain = BlogBatchSampler(labels, per_class=4, class_images=12, random_extra=5, seed=3)
    sampler = BlogBatchSampler(labels + pool, per_class=4, class_images=12, random_extra=5, seed=3, negatives=3)
    for epoch in range(3):
        parts = sampler.parts(epoch)
        assert [part for part, _ in parts] == [part for part, _ in plain.parts(epoch)]  # characters unchanged
        for part, extra in parts:
            unlabelled = [i for i in extra if i >= len(labels)]
            assert len(unlabelled) == 3 and len(extra) == 5 + 3       # random others, then the pool
            assert all(i < len(labels) for i in part)                  # never a character's image
    from illusort.train.methods import Triplet

    codes = Triplet(labels + pool, per_class=4, class_images=12, random_extra=5, negatives=3).codes
    assert len(set(codes[len(labels):].tolist())) == 20                  # each unlabelled image its own
    assert set(codes[len(labels):].tolist()).isdisjoint(codes[:len(labels)].tolist())


def test_negatives_from_an_unlabelled_folder(labelled, tmp_path):
    pool = tmp_path / "faces"
    pool.mkdir()
    for k in range(8):
        draw_character(50 + k, 0, size=(40, 48)).save(pool / f"{k}.png")
    out = tmp_path / "neg.pt"
    result = run_cli("train", labelled, pool, "--out", out, "--negatives", "4", *FAST, *TRIPLET)
    card = card_of(out)
    assert card["hyper"]["negatives"] == 4 and card["data"]["unlabelled_images"] == 8
    assert "ignores them" not in result.output
    result = run_cli("train", labelled, pool, "--out", tmp_path / "plain.pt", "--source-batches", *FAST, *TRIPLET)
    assert "--negatives N adds N of them" in result.output
    assert "--source-batches: every training character comes from one source" in result.output
    for wrong in (["--loss", "arcface"], ["--method", "finetune"]):   # no pair loss to be a negative in
        result = run_cli("train", labelled, pool, "--out", tmp_path / "x.pt", "--negatives", "4", *FAST, *wrong,
                         ok=False)
        assert "--negatives adds unlabelled images" in result.output and "Traceback" not in result.output
