"""The checks of `--model` and `--device` that need no torch, so a wrong model name or device is
refused before any slow work (`weights` loads the model; `registry` holds the tables)."""
from __future__ import annotations

import sys
from pathlib import Path

from .errors import ModelError
from .registry import BUILTIN, DEFAULT_MODEL, FALLBACK_MODEL, find_model_file, models_dirs  # noqa: F401

DEVICES = ("auto", "cpu", "cuda", "mps")


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
