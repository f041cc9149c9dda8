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
import stat
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import nets
from .errors import ModelError  # noqa: F401 (also importable from here, as before)
from .registry import (BUILTIN, DEFAULT_MODEL, INPUT_SIZES, FALLBACK_MODEL, find_model_file, installed_models,  # noqa: F401
                       MODELS, PRECISIONS, models_dirs, unknown_model)

FORMAT = "illusort-checkpoint-1"


@dataclass
class LoadedModel:
    net: torch.nn.Module
    card: dict
    weights_id: str  # name and hash of the weights and the card values they are built with (plus the VGG16 layer)
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
            out = self.net(x).float()
        if self.precision == "bfloat16":  # unit length again in float32 (bf16 rounding: cosines up to 1.004)
            out = torch.nn.functional.normalize(out, dim=1)
        if not torch.isfinite(out).all():  # never let such vectors into an index
            raise ModelError(f"model {self.weights_id} gives non-finite embeddings: its weights or card are damaged")
        return out.cpu().numpy()

    @property
    def threshold(self) -> float | None:
        """Similarity at the EER point of held-out pairs: where average linkage cuts."""
        return self.card.get("threshold")

    @property
    def known_threshold(self) -> float | None:
        """Similarity at 1% false accepts on held-out pairs (falls back to `threshold`)."""
        return self.card.get("known_threshold", self.threshold)

    def known_threshold_for(self, references: int) -> float | None:
        """`sort --known`'s default for a picture compared with `references` pictures: the
        similarity where a picture of an unknown character passes one of them about 1% of the
        time, i.e. pairs at 1%/references false accepts (cards without `far_thresholds`:
        `known_threshold`). Measured: with 34 known icon characters x 3 references the
        1%-pair threshold put 29% of unknown pictures under a name."""
        found = self.threshold_at_far(0.01 / max(1, references))
        return self.known_threshold if found is None else found

    def query_threshold_for(self, pictures: int, references: int) -> float | None:
        """`query`'s default on a folder of `pictures` with `references`: the similarity where
        about one picture of another character in the whole folder passes one reference, i.e.
        pairs at 1/(pictures x references) false accepts, within the card's calibrated range
        (down to 1e-4: a folder of 100,000 lets in more). The EER point lets 11-15% of pairs of
        strangers through, which against a folder is most of the matches (issue 26). Cards
        without `far_thresholds`: `known_threshold`."""
        found = self.threshold_at_far(1 / max(1, pictures * references))
        return self.known_threshold if found is None else found

    def threshold_at_far(self, far: float) -> float | None:
        """Similarity where pairs of different characters pass `far` of the time, from the
        card's `far_thresholds` (log-interpolated, clamped to the points calibrated); None
        for a card without them."""
        import math

        points = sorted((float(f), t) for f, t in (self.card.get("far_thresholds") or {}).items())
        if not points:
            return None
        if far <= points[0][0]:
            return points[0][1]
        for (f0, t0), (f1, t1) in zip(points, points[1:]):
            if far <= f1:
                w = (math.log(far) - math.log(f0)) / (math.log(f1) - math.log(f0))
                return t0 + w * (t1 - t0)
        return points[-1][1]

    @property
    def input_size(self) -> int:
        return int(self.card.get("input_size") or self.net.input_size)


def card_for_builtin(name: str, layer: str | None = None) -> dict:
    spec = BUILTIN[name]
    return {"name": name, "arch": spec.arch, "init": spec.init, "embed_dim": None, "layer": layer,
            "trained": False}


# Sane bounds of card values a checkpoint (or the JSON beside it, which anyone may edit) sets.
BUILD_KEYS = ("arch", "embed_dim", "layer", "input_size", "members", "shares")  # what `build_from_card` reads
EMBED_DIMS = (0, 65536)  # 0: no head


def check_card(card: dict, path: Path) -> dict:
    """Refuse card values no network could use (`input_size: -5` or `60000`), with one line."""
    def bad(key, why):
        raise ModelError(f"{path}: model card value {key}={card.get(key)!r} {why}")

    size = card.get("input_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)
                             or not INPUT_SIZES[0] <= size <= INPUT_SIZES[1]):
        bad("input_size", f"is not a whole number of pixels from {INPUT_SIZES[0]} to {INPUT_SIZES[1]} "
                          "(the networks reduce their input 32 times)")
    dim = card.get("embed_dim")
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or not EMBED_DIMS[0] <= dim <= EMBED_DIMS[1]):
        bad("embed_dim", f"is not a whole number from {EMBED_DIMS[0]} to {EMBED_DIMS[1]}")
    for key in ("threshold", "known_threshold"):
        value = card.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                  or not -1 <= value <= 1):
            bad(key, "is not a cosine similarity from -1 to 1")
    if card.get("arch") == nets.ENSEMBLE:
        check_ensemble_card(card, path)
    far_thresholds = card.get("far_thresholds")
    if far_thresholds is not None:
        try:
            ok = all(0 < float(f) < 1 and -1 <= float(t) <= 1 for f, t in dict(far_thresholds).items())
        except (TypeError, ValueError):
            ok = False
        if not ok:
            bad("far_thresholds", "is not a table of false-accept rates and cosine similarities")
    return card


def check_ensemble_card(card: dict, path: Path) -> None:
    """An ensemble's members are single networks of one input size, each with a finite positive share."""
    members, shares = card.get("members"), card.get("shares")
    if not (isinstance(members, list) and len(members) >= 2 and all(isinstance(m, dict) for m in members)):
        raise ModelError(f"{path}: model card value members is not a list of two or more member cards")
    try:
        nets.check_shares(shares, len(members))
    except ValueError as error:
        raise ModelError(f"{path}: model card value shares={shares!r} {error}") from None
    for member in members:
        if member.get("arch") == nets.ENSEMBLE:
            raise ModelError(f"{path}: model card value members holds an ensemble (members must be single networks)")
        check_card(member, path)
    sizes = ({member.get("input_size") for member in members} | {card.get("input_size")}) - {None}
    if len(sizes) > 1:
        raise ModelError(f"{path}: model card input sizes {sorted(sizes, key=str)} differ: an ensemble's members "
                         "and the card share one input size")


def check_regular(path: Path) -> Path:
    """A model file must be a regular file: reading a FIFO named `x.pt` would wait forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise ModelError(f"cannot read model {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(mode):
        raise ModelError(f"{path} is not a loadable checkpoint (not a regular file)")
    return path


def build_from_card(card: dict) -> torch.nn.Module:
    """The network a card describes, randomly initialised (the checkpoint's weights go in next)."""
    if card["arch"] == nets.ENSEMBLE:
        return nets.Ensemble([build_from_card(member) for member in card["members"]], card["shares"])
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
                others = [n for n in installed_models() if n != DEFAULT_MODEL]
                where = ", ".join(str(d) for d in models_dirs() if d.is_dir()) or "no models folder"
                warnings.warn(f"the default model '{DEFAULT_MODEL}' is not installed ({where}): using "
                              f"'{FALLBACK_MODEL}' (ImageNet features, not trained on anime); character sorting "
                              "will be poor" + (f"; installed: --model {' / '.join(others)}" if others else ""),
                              stacklevel=2)
            spec = FALLBACK_MODEL
        else:
            spec = DEFAULT_MODEL
    if spec in BUILTIN:
        card = card_for_builtin(spec, layer)
        check_layer(card, layer, spec)
        try:
            net = nets.build(card["arch"], init=card["init"], layer=layer)
        except nets.WeightsUnavailable as error:
            raise ModelError(str(error)) from None
        card["input_size"] = net.input_size
        model_id = spec if not layer else f"{spec}@{layer}"
    else:
        path = find_model_file(spec)
        if path is None:
            raise unknown_model(spec)
        card, state = read_checkpoint(check_regular(path))
        check_card(card, path)
        check_layer(card, layer, spec)
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
        # the weights and the card values the network is built from (the card beside the file may be edited)
        built = json.dumps({key: card.get(key) for key in BUILD_KEYS}, sort_keys=True, default=str)
        digest = hashlib.sha1(path.read_bytes() + built.encode()).hexdigest()[:12]
        model_id = f"{card.get('name', path.stem)}:{digest}" + (f"@{layer}" if layer else "")
    net.eval().to(device)
    return LoadedModel(net, card, model_id, device)


def check_layer(card: dict, layer: str | None, spec: str) -> None:
    """`--layer` picks one of VGG16's layers; on any other network it would only loosen weight loading."""
    if layer and card.get("arch") != "vgg16":
        raise ModelError(f"--layer picks a VGG16 layer; {spec} is a {card.get('arch')} model (leave --layer out)")
    if layer and layer not in nets.VGG_LAYERS:
        raise ModelError(f"unknown VGG16 layer {layer!r}; choose one of {', '.join(nets.VGG_LAYERS)}")


def combine_models(paths: list, shares: list[float] | None = None) -> tuple[torch.nn.Module, dict]:
    """An ensemble (`nets.Ensemble`) of trained checkpoints and its card, without thresholds:
    calibrate them on the members' dev characters before use (benchmarks/make_ensemble.py).
    The members must share one input size and one character split, or the split's test
    characters would not be unseen by all of them."""
    loaded = [load_model(str(p), quiet=True) for p in paths]
    if len({json.dumps(m.card.get("split"), sort_keys=True) for m in loaded}) != 1:
        raise ModelError("ensemble members were trained on different character splits: their test "
                         "characters are not unseen by all of them")
    members = [{key: m.card.get(key) for key in ("name", "arch", "embed_dim", "layer", "input_size", "command")}
               for m in loaded]
    card = {"arch": nets.ENSEMBLE, "members": members, "shares": list(shares or [1.0] * len(loaded)),
            "input_size": loaded[0].input_size, "method": "ensemble", "trained": True,
            "split": loaded[0].card.get("split")}
    check_ensemble_card(card, Path(" + ".join(map(str, paths))))   # the checks a loaded ensemble gets
    net = nets.Ensemble([m.net for m in loaded], card["shares"])
    return net, {**card, "embed_dim": net.embed_dim}


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


def load_blob(path: Path) -> dict:
    """The dict inside an illusort checkpoint or resume file (never runs code: weights_only)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        shipped = getattr(MODELS.get(Path(path).stem), "shipped", False)
        raise ModelError(f"{path} is not a loadable checkpoint ({type(error).__name__}); " + (
            "the file is damaged: reinstall illusort (or copy models/ again)" if shipped
            else "train one with `illusort train`")) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelError(f"{path} is not an illusort checkpoint (no '{FORMAT}' header); "
                         "train one with `illusort train`")
    return blob


def read_checkpoint(path: Path) -> tuple[dict, dict]:
    """(card, state_dict) of an illusort checkpoint; a card JSON beside it takes precedence."""
    blob = load_blob(path)
    try:  # a file with the header but a damaged body, or a damaged card beside it
        card = dict(blob["card"])
        beside = path.with_suffix(".json")
        if beside.exists():
            card.update(json.loads(check_regular(beside).read_text()))
        state = dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, OSError, RecursionError) as error:
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
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelError("--device mps asked for, but torch sees no Apple GPU (MPS); use --device cpu")
    return device
