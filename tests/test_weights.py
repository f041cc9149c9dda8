import json
import pickle

import pytest
import torch

from illusort import nets
from illusort.weights import DEFAULT_MODEL, ModelError, find_model_file, load_model, save_checkpoint

from conftest import run_cli


def test_checkpoint_roundtrip_gives_identical_embeddings(tmp_path):
    net = nets.build("resnet18", embed_dim=16, input_size=32).eval()
    path = tmp_path / "m.pt"
    save_checkpoint(path, net, {"arch": "resnet18", "embed_dim": 16, "threshold": 0.7})
    model = load_model(str(path))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.net(x), net(x))
    assert model.threshold == 0.7 and model.input_size == 32 and path.with_suffix(".json").exists()


def test_fp16_checkpoint_loads(tmp_path):
    net = nets.build("lite0", embed_dim=8, input_size=32).eval()
    save_checkpoint(tmp_path / "h.pt", net, {"arch": "lite0", "embed_dim": 8}, half=True)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.nn.functional.cosine_similarity(load_model(str(tmp_path / "h.pt")).net(x), net(x)).item() > 0.99


def test_bad_model_files_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a loadable checkpoint.*train one"):
        load_model(str(junk))
    damaged = tmp_path / f"{DEFAULT_MODEL}.pt"  # a shipped model cut short: reinstall, not train
    damaged.write_bytes(find_model_file(DEFAULT_MODEL).read_bytes()[:100_000])
    with pytest.raises(ModelError, match="damaged: reinstall"):
        load_model(str(damaged))

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelError):
        load_model(str(evil))

    other = tmp_path / "other.pt"
    save_checkpoint(other, nets.build("resnet18", embed_dim=16), {"arch": "resnet18", "embed_dim": 16})
    blob = torch.load(other, weights_only=True)
    blob["card"]["arch"] = "lite0"
    torch.save(blob, other)
    other.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="do not fit"):
        load_model(str(other))
    with pytest.raises(ModelError, match="not found"):
        load_model("no-such-model")


def test_cli_reports_model_errors_without_traceback(tmp_path, collection):
    root, _ = collection
    result = run_cli("embed", root, "--model", tmp_path / "missing.pt", ok=False)
    assert "not found" in result.output and "Traceback" not in result.output


def test_vgg_layers_have_the_papers_dimensions():
    net = nets.build("vgg16", input_size=32).eval()
    with torch.no_grad():
        taps = net.trunk.taps(torch.rand(1, 3, 32, 32))
    assert {k: v.shape[1] for k, v in taps.items()} == {
        "conv1": 64, "conv2": 128, "conv3": 256, "conv4": 512, "conv5": 512, "fc1": 4096, "fc2": 4096}


def test_known_threshold_rises_with_the_number_of_references():
    """Each picture is compared with every reference: with R references, pairs must pass at
    1%/R false accepts for an unknown picture to pass one of them about 1% of the time."""
    from illusort.weights import LoadedModel

    card = {"known_threshold": 0.6, "far_thresholds": {"0.01": 0.6, "0.001": 0.7, "0.0001": 0.8}}
    model = LoadedModel(net=None, card=card, weights_id="m")
    assert model.known_threshold_for(1) == pytest.approx(0.6)
    assert model.known_threshold_for(10) == pytest.approx(0.7)
    assert 0.7 < model.known_threshold_for(30) < 0.8 and model.known_threshold_for(10_000) == pytest.approx(0.8)
    assert LoadedModel(net=None, card={"known_threshold": 0.65}, weights_id="m").known_threshold_for(50) == 0.65


def test_query_threshold_lets_about_one_stranger_of_the_folder_pass():
    """`query` compares every picture of the folder with every reference: pairs must pass at
    1/(pictures x references) false accepts for about one stranger to pass (issue 26 item 2)."""
    from illusort.weights import LoadedModel

    card = {"threshold": 0.45, "known_threshold": 0.6,
            "far_thresholds": {"0.01": 0.6, "0.001": 0.7, "0.0001": 0.8}}
    model = LoadedModel(net=None, card=card, weights_id="m")
    assert model.query_threshold_for(100, 1) == pytest.approx(0.6)
    assert model.query_threshold_for(250, 4) == pytest.approx(0.7)
    assert model.query_threshold_for(10, 1) == pytest.approx(0.6)           # above the table: its loosest point
    assert model.query_threshold_for(1_000_000, 3) == pytest.approx(0.8)    # below it: its strictest
    assert model.query_threshold_for(0, 1) == pytest.approx(0.6)
    assert LoadedModel(net=None, card={"threshold": 0.45, "known_threshold": 0.65},
                       weights_id="m").query_threshold_for(300, 3) == 0.65
    assert LoadedModel(net=None, card={}, weights_id="m").query_threshold_for(300, 3) is None


def test_ensemble_cosine_is_the_share_weighted_mean_and_round_trips(tmp_path):
    from illusort.weights import combine_models

    paths = []
    for k, arch in enumerate(("resnet18", "lite0")):
        torch.manual_seed(k)
        paths.append(tmp_path / f"m{k}.pt")
        save_checkpoint(paths[-1], nets.build(arch, embed_dim=8, input_size=32).eval(),
                        {"arch": arch, "embed_dim": 8, "split": {"dev": ["a/x"], "test": ["a/y"]}})
    net, card = combine_models(paths, [3.0, 1.0])
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        a, b = (load_model(str(p)).net(x) for p in paths)
        expected = 0.75 * (a[0] @ a[1]) + 0.25 * (b[0] @ b[1])
        out = net.eval()(x)
        torch.testing.assert_close(out[0] @ out[1], expected)
        torch.testing.assert_close(out.norm(dim=1), torch.ones(2))
        save_checkpoint(tmp_path / "pair.pt", net, {**card, "threshold": 0.5}, half=True)
        loaded = load_model(str(tmp_path / "pair.pt"))
        assert torch.nn.functional.cosine_similarity(loaded.net(x), out).min() > 0.99
    assert loaded.input_size == 32 and loaded.net.embed_dim == 16 and loaded.threshold == 0.5

    blob = torch.load(paths[1], weights_only=True)  # another split: its test characters are not unseen
    blob["card"]["split"] = {"dev": ["a/z"], "test": ["a/x"]}
    torch.save(blob, paths[1])
    paths[1].with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="different character splits"):
        combine_models(paths)


def test_edited_ensemble_cards_are_one_line_errors(tmp_path):
    net = nets.Ensemble([nets.build("resnet18", embed_dim=4, input_size=32) for _ in range(2)], [1, 1])
    members = [{"arch": "resnet18", "embed_dim": 4, "input_size": 32}] * 2
    path = tmp_path / "pair.pt"
    for members_, shares, match in ((members, [1, -1], "shares=.*one number"), (members, [float("inf"), 1], "shares"),
                                    (members, [1, "1"], "shares"), (members[:1], [1], "two or more"),
                                    ([{"arch": "ensemble"}, members[0]], [1, 1], "holds an ensemble"),
                                    ([{**members[0], "input_size": 64}, members[0]], [1, 1], "input sizes")):
        save_checkpoint(path, net, {"arch": "ensemble", "members": members_, "shares": shares})
        with pytest.raises(ModelError, match=match):
            load_model(str(path))
    save_checkpoint(path, net, {"arch": "ensemble", "members": members, "shares": [1, 1], "input_size": 64})
    with pytest.raises(ModelError, match="input sizes"):   # the card's own size must be the members'
        load_model(str(path))
    save_checkpoint(path, net, {"arch": "ensemble", "members": members, "shares": [1, 1]})
    first = load_model(str(path)).model_id
    with pytest.raises(ModelError, match="--layer picks a VGG16 layer"):
        load_model(str(path), layer="fc1")
    card = path.with_suffix(".json")        # shares edited by hand: other vectors, so another model id
    card.write_text(json.dumps({**json.loads(card.read_text()), "shares": [1, 3]}))
    assert load_model(str(path)).model_id != first
    card.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match="damaged"):
        load_model(str(path))
    with pytest.raises(ValueError, match="one input size"):
        nets.Ensemble([nets.build("resnet18", input_size=32), nets.build("resnet18", input_size=64)], [1, 1])


def test_a_model_giving_non_finite_embeddings_is_refused_not_indexed(tmp_path):
    net = nets.build("resnet18", embed_dim=4, input_size=32).eval()
    with torch.no_grad():
        net.head.weight[0, 0] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", net, {"arch": "resnet18", "embed_dim": 4})
    with pytest.raises(ModelError, match="non-finite embeddings"):
        load_model(str(tmp_path / "nan.pt")).forward(torch.rand(1, 3, 32, 32))
