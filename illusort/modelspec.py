"""Resolving `--model NAME|PATH` to a file, and the checks that need no network: no torch here,
so a wrong model name or device is refused before any slow work (`weights` loads the model)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import ModelError

DEFAULT_MODEL = "anime-lite0"
FALLBACK_MODEL = "lite0-imagenet"
# Models that need no file: (arch, init, embed_dim). ImageNet features, no anime training.
BUILTIN = {
    "lite0-imagenet": ("lite0", "imagenet", None),
    "resnet18-imagenet": ("resnet18", "imagenet", None),
    "vgg16-imagenet": ("vgg16", "imagenet", None),
    "hsv-hist": ("hsv-hist", "none", None),
}
DEVICES = ("auto", "cpu", "cuda", "mps")


def models_dirs() -> list[Path]:
    """Where named models are looked up: $ILLUSORT_MODELS, the source tree, the install prefix."""
    dirs = [Path(p) for p in os.environ.get("ILLUSORT_MODELS", "").split(os.pathsep) if p]
    dirs += [Path(__file__).resolve().parent.parent / "models", Path(sys.prefix) / "share/illusort/models"]
    return dirs


def find_model_file(name: str) -> Path | None:
    path = Path(name).expanduser()
    if path.suffix == ".pt" or path.exists():
        return path if path.exists() else None
    for folder in models_dirs():
        if (folder / f"{name}.pt").exists():
            return folder / f"{name}.pt"
    return None


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
