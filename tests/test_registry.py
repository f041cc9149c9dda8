"""The model registry is the one place that names networks and models: the CLI's choices,
its help and the README's table follow it."""
import subprocess
import sys
from pathlib import Path

import pytest

from illusort import registry

ROOT = Path(__file__).resolve().parent.parent

FAKE = """
from illusort import registry
registry.BACKBONES["toynet"] = registry.Backbone("toynet", "a toy trunk", 8, 32, registry.IMAGENET_NORM,
                                                 "pypi", "efficientnet_lite", "efficientnet-lite0")
registry.MODELS["toynet-imagenet"] = registry.ModelSpec("toynet-imagenet", "toynet", "toy features")
from click.testing import CliRunner
from illusort.cli import main
print(CliRunner().invoke(main, ["train", "--help"]).output)
print(CliRunner().invoke(main, ["embed", "--help"]).output)
"""


def test_a_new_backbone_is_offered_by_the_cli():
    out = subprocess.run([sys.executable, "-c", FAKE], capture_output=True, text=True, check=True).stdout
    flat = " ".join(out.split())
    assert "lite2|resnet18|vgg16|toynet]" in flat     # train --arch choices
    assert "toynet-imagenet" in flat.replace("- ", "-")  # embed --model help


def test_every_backbone_has_a_builder_and_every_model_an_arch():
    from illusort.nets.backbones import BUILDERS

    for backbone in registry.BACKBONES.values():
        assert backbone.builder in BUILDERS
    for model in registry.MODELS.values():
        assert model.arch in (*registry.ARCHS, registry.ENSEMBLE)
    assert registry.DEFAULT_MODEL in registry.MODELS and registry.MODELS[registry.DEFAULT_MODEL].shipped


def test_readme_model_table_is_the_registry():
    assert registry.model_table() in (ROOT / "models" / "README.md").read_text(encoding="utf-8")


def test_models_command_lists_the_registry():
    from click.testing import CliRunner

    from illusort.cli import main

    out = CliRunner().invoke(main, ["models"]).output
    for name in registry.MODELS:
        assert name in out


def test_readme_and_train_agree_where_training_starts():
    """Issue 26 item 7: the README said the shipped model (an ensemble, which cannot be
    trained) while `train` started from anime-lite0-v3."""
    from click.testing import CliRunner

    from illusort.cli import main
    from illusort.registry import shipped_model

    start = registry.TRAIN_FROM
    assert registry.MODELS[start].shipped and registry.MODELS[start].arch != registry.ENSEMBLE
    assert shipped_model()[0] == start
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"By default training starts from `{start}`" in readme
    assert f"| `--init` | default: `{start}`" in readme
    help_text = " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())
    assert f"Default: {start}, the shipped single network" in help_text


def test_train_init_names_the_weights_training_starts_from(tmp_path, monkeypatch):
    """`train --init` as the registry resolves it (moved here from the CLI): no --init is the
    shipped network (said once) or ImageNet for another --arch; a built-in model or an unknown
    name is a one-line error."""
    from illusort.errors import InputError

    notes = []
    shipped = registry.shipped_model()
    start = registry.train_init(None, None, "triplet", False, log=notes.append)
    assert start == (str(shipped[1]) if shipped else "lite0") and len(notes) == (1 if shipped else 0)
    assert registry.train_init(None, "vgg16", "triplet", False) == "imagenet"
    assert registry.train_init(None, None, "triplet", True) is None      # a resumed run keeps its own
    assert registry.train_init(None, None, "ft+dc", False) is None       # needs a finetune checkpoint
    assert registry.train_init("resnet18", None, "triplet", False) == "resnet18"
    checkpoint = tmp_path / "mine.pt"
    checkpoint.write_bytes(b"")
    assert registry.train_init(str(checkpoint), None, "triplet", False) == str(checkpoint)
    with pytest.raises(InputError, match="built-in feature model"):
        registry.train_init("hsv-hist", None, "triplet", False)
    with pytest.raises(InputError, match="no such model or checkpoint"):
        registry.train_init("no-such-model", None, "triplet", False)


def test_training_choices_are_checked_by_the_config():
    from illusort.train.config import TrainConfig
    from illusort.train.data import TrainError

    for name in ("loss", "optimizer"):
        with pytest.raises(TrainError, match=f"unknown {name}"):
            TrainConfig(**{name: "nope"}).resolve()
