"""Checkpoints, model cards, and resolving `--model NAME|PATH` to a ready network.

A checkpoint `NAME.pt` holds {"card": {...}, "state_dict": {...}} and is loaded with
`weights_only=True`, so a model file can never run code. The card (also written beside it
as `NAME.json`, which people read and `evaluate` may update) says how to rebuild the net:
arch, embed_dim, layer, input_size, plus threshold, data and metrics.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import nets

FORMAT = "illusort-checkpoint-1"
DEFAULT_MODEL = "anime-lite0"
FALLBACK_MODEL = "lite0-imagenet"
# Models that need no file: (arch, init, embed_dim). ImageNet features, no anime training.
BUILTIN = {
    "lite0-imagenet": ("lite0", "imagenet", None),
    "resnet18-imagenet": ("resnet18", "imagenet", None),
    "vgg16-imagenet": ("vgg16", "imagenet", None),
    "hsv-hist": ("hsv-hist", "none", None),
}


class ModelError(ValueError):
    """A model name or file that cannot be used; the message says why and what to do."""


PRECISIONS = ("auto", "float32", "bfloat16")


@dataclass
class LoadedModel:
    net: torch.nn.Module
    card: dict
    weights_id: str  # name and content hash of the weights (plus the VGG16 layer)
    device: str = "cpu"
    faces: str = "off"  # what is embedded: whole images, or face crops (`faces.face_boxes`)
    precision: str = "float32"  # bfloat16: autocast, faster where the CPU has bf16 units

    @property
    def model_id(self) -> str:
        """Keys the index rows, so embeddings of two models, face modes or precisions never mix."""
        return (self.weights_id + ("" if self.faces == "off" else f"+faces-{self.faces}")
                + ("" if self.precision == "float32" else f"+{self.precision}"))

    def forward(self, x: torch.Tensor):
        """Embeddings (float32 numpy array) of a network-ready batch, at the model's precision."""
        with torch.inference_mode(), torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16,
                                                    enabled=self.precision == "bfloat16"):
            return self.net(x).float().cpu().numpy()

    @property
    def threshold(self) -> float | None:
        """Similarity at the EER point of held-out pairs: `query`'s default."""
        return self.card.get("threshold")

    @property
    def known_threshold(self) -> float | None:
        """Similarity at 1% false accepts on held-out pairs: `sort --known`'s default, which
        compares each picture with many references (falls back to `threshold`)."""
        return self.card.get("known_threshold", self.threshold)

    @property
    def input_size(self) -> int:
        return int(self.card.get("input_size") or self.net.input_size)


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


def card_for_builtin(name: str, layer: str | None = None) -> dict:
    arch, init, embed_dim = BUILTIN[name]
    return {"name": name, "arch": arch, "init": init, "embed_dim": embed_dim, "layer": layer,
            "trained": False}


def build_from_card(card: dict) -> torch.nn.Module:
    """The network a card describes, randomly initialised (the checkpoint's weights go in next)."""
    return nets.build(card["arch"], embed_dim=card.get("embed_dim"), init="none",
                      layer=card.get("layer"), input_size=card.get("input_size"))


def load_model(spec: str | None = None, layer: str | None = None, device: str = "cpu",
               quiet: bool = False) -> LoadedModel:
    """Resolve a model name or checkpoint path; `None` means the shipped default.

    `layer` overrides the output layer of a VGG16 model (conv1..conv5, fc1, fc2).
    """
    if spec is None:
        if find_model_file(DEFAULT_MODEL) is None:
            if not quiet:
                warnings.warn(f"no trained model '{DEFAULT_MODEL}' found in {models_dirs()[1]}: using "
                              f"'{FALLBACK_MODEL}' (ImageNet features, not trained on anime); "
                              "character sorting will be poor.", stacklevel=2)
            spec = FALLBACK_MODEL
        else:
            spec = DEFAULT_MODEL
    if spec in BUILTIN:
        card = card_for_builtin(spec, layer)
        arch, init, embed_dim = BUILTIN[spec]
        try:
            net = nets.build(arch, embed_dim=embed_dim, init=init, layer=layer)
        except nets.WeightsUnavailable as error:
            raise ModelError(str(error)) from None
        card["input_size"] = net.input_size
        model_id = spec if not layer else f"{spec}@{layer}"
    else:
        path = find_model_file(spec)
        if path is None:
            raise ModelError(f"model {spec!r} not found: give a checkpoint path (.pt), a name in "
                             f"{models_dirs()[1]}, or one of {', '.join(BUILTIN)}")
        card, state = read_checkpoint(path)
        if layer:
            card["layer"] = layer
        try:
            net = build_from_card(card)
        except (KeyError, ValueError, TypeError) as error:  # a card naming no or an unknown architecture
            raise ModelError(f"{path}: its model card does not describe a network illusort can build "
                             f"({type(error).__name__}: {error})") from None
        try:
            net.load_state_dict(state, strict=not layer)
        except RuntimeError as error:
            raise ModelError(f"{path}: weights do not fit architecture {card['arch']!r} "
                             f"({str(error).splitlines()[0]})") from None
        digest = hashlib.sha1(path.read_bytes()).hexdigest()[:12]
        model_id = f"{card.get('name', path.stem)}:{digest}" + (f"@{layer}" if layer else "")
    net.eval().to(device)
    return LoadedModel(net, card, model_id, device)


def with_faces(model: LoadedModel, faces: str) -> LoadedModel:
    """The model embedding face crops (`auto`/`always`) or whole images (`off`); rows of each
    mode are kept apart in the index. Refuses face crops where detection does not work."""
    from .faces import FACE_MODES, check_detector

    if faces not in FACE_MODES:
        raise ModelError(f"unknown face mode {faces!r}; choose one of {', '.join(FACE_MODES)}")
    if faces == "off":
        return replace(model, faces="off")
    check_detector()
    return replace(model, faces=faces)


def with_precision(model: LoadedModel, precision: str) -> LoadedModel:
    """The model at `precision`; `auto` is bfloat16 where the device computes it natively
    (`native_bf16`), float32 elsewhere (emulated bf16 runs slower than float32)."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = "bfloat16" if native_bf16(model.device) else "float32"
    return replace(model, precision=precision)


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions that compute in bfloat16


def native_bf16(device: str, cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether `device` has bfloat16 arithmetic units: a CUDA GPU that supports it without
    emulation (Ampere and later), or an x86 CPU with AVX512-BF16 or AMX-BF16 (Linux flags)."""
    kind = device.split(":")[0]
    if kind == "cuda":
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # older torch: no emulation switch
            return torch.cuda.get_device_capability()[0] >= 8
        except (RuntimeError, AssertionError):
            return False
    if kind != "cpu":
        return False
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool(set(line.split(":", 1)[-1].split()) & set(CPU_BF16_FLAGS))
    except OSError:
        pass
    return False


def read_checkpoint(path: Path) -> tuple[dict, dict]:
    """(card, state_dict) of an illusort checkpoint; a card JSON beside it takes precedence."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelError(f"{path} is not a loadable checkpoint ({type(error).__name__}); "
                         "train one with `illusort train`") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{path} is not an illusort checkpoint (no '{FORMAT}' header); "
                         "train one with `illusort train`")
    try:  # a file with the header but a damaged body, or a damaged card beside it
        card = dict(blob["card"])
        beside = path.with_suffix(".json")
        if beside.exists():
            card.update(json.loads(beside.read_text()))
        state = dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, OSError) as error:
        raise ModelError(f"{path}: damaged checkpoint or model card ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''})") from None
    if card.get("half"):
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return card, state


def save_checkpoint(path: Path, net: torch.nn.Module, card: dict, half: bool = False,
                    extra: dict | None = None) -> None:
    """Write NAME.pt (atomically) and its readable card NAME.json.

    `extra` (optimizer state, epoch) is for resuming training; `half` stores fp16 weights.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    card = {**card, "name": card.get("name") or path.stem, "half": half,
            "input_size": card.get("input_size") or getattr(net, "input_size", None)}
    state = {k: (v.half() if half and v.is_floating_point() else v).cpu() for k, v in net.state_dict().items()}
    tmp = path.with_suffix(".pt.tmp")
    torch.save({"format": FORMAT, "card": card, "state_dict": state, **(extra or {})}, tmp)
    os.replace(tmp, path)
    write_card(path.with_suffix(".json"), card)


def write_card(path: Path, card: dict) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def resolve_device(device: str = "auto") -> str:
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    return device
