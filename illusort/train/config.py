"""Every setting of a training run, in one dataclass, resolved once and stored whole in the
model card (and in the resume state): a run is reproduced from its card alone."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..registry import BACKBONES, ENSEMBLE, LOSSES, OPTIMIZERS
from ..registry import TRAIN_METHODS as METHODS
from .data import TrainError

ARCHS = tuple(BACKBONES)
# Per-method defaults (the sources' settings; batch sizes and epochs chosen for a CPU).
DEFAULTS = {
    "triplet": {"arch": "resnet18", "embed_dim": 500, "lr": 1e-3, "weight_decay": 1e-6, "batch_size": 100,
                "epochs": 30},
    "finetune": {"arch": "vgg16", "embed_dim": 0, "lr": 1e-3, "weight_decay": 1e-5, "batch_size": 64,
                 "epochs": 20},
    "deepcluster": {"arch": "vgg16", "embed_dim": 0, "lr": 1e-4, "weight_decay": 1e-5, "batch_size": 64,
                    "epochs": 20},
}
DEFAULTS["ft+dc"] = DEFAULTS["deepcluster"]
DEFAULT_INPUT_SIZE = 128
SHIP_LAYER = "fc1"  # VGG16's embedding layer in the shipped card (the paper's best)
PCA_DIMS = 256      # DeepCluster: PCA-whitening before k-means


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how. `None` means the method's default (`DEFAULTS`); `resolve()`
    fills them in, so a resolved config holds every value the run used.

    `init`: imagenet | none | a backbone name (its ImageNet weights) | PATH of a checkpoint.
    `batch_size`: triplet: images of the batch's characters (plus `random_extra` others and
    `negatives` unlabelled ones); the other methods: images per batch."""
    method: str = "triplet"
    arch: str | None = None
    init: str = "imagenet"
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    input_size: int | None = None
    embed_dim: int | None = None      # 0: no head, the embedding is the trunk's features
    k: int = 3000                     # deepcluster pseudo-classes (capped for small sets)
    seed: int = 0                     # split, batches, augmentation
    label_depth: int = 1
    per_class: int = 10
    random_extra: int = 100
    negatives: int = 0                # triplet: unlabelled images (no character folder) added to each batch
    margin: float = 0.1
    loss: str = "triplet"
    optimizer: str = "sgd"
    ce_weight: float = 0.0
    source_batches: bool = False      # triplet: each batch from one source (same-style negatives)
    split_from: str | None = None     # a model card whose character split to keep (others join train)
    faces: str = "auto"               # as `embed` crops: train on what the model will be shown
    momentum: float = 0.9
    weight_decay: float | None = None

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """A config from a card or resume state (keys it does not know, e.g. derived ones, are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def dc(self) -> bool:
        return self.method in ("deepcluster", "ft+dc")

    @property
    def layer(self) -> str | None:
        """The embedding layer of the written model (VGG16's fc1; None for other nets)."""
        return SHIP_LAYER if self.arch == "vgg16" else None

    @property
    def train_layer(self) -> str | None:
        """The layer training works on: classifiers sit on VGG16's fc2 (the paper's and
        DeepCluster's penultimate layer) unless an embedding head is trained."""
        if self.arch != "vgg16":
            return None
        return "fc2" if self.method != "triplet" and not self.embed_dim else SHIP_LAYER

    @property
    def pretrained(self) -> str:
        """The `nets.build` init for a fresh net: imagenet or none (a checkpoint loads later)."""
        return "imagenet" if self.init == "imagenet" or self.init in BACKBONES else "none"

    @property
    def parent(self) -> Path | None:
        return None if self.init in ("imagenet", "none") or self.init in BACKBONES else Path(self.init)

    def resolve(self) -> tuple[TrainConfig, dict | None, dict | None]:
        """Defaults filled in and checked. Returns (config, parent card, parent weights)."""
        from ..weights import read_checkpoint

        if self.method not in METHODS:
            raise TrainError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        for name, value, known in (("loss", self.loss, LOSSES), ("optimizer", self.optimizer, OPTIMIZERS)):
            if value not in known:
                raise TrainError(f"unknown {name} {value!r}; choose one of {', '.join(known)}")
        d, arch, init = DEFAULTS[self.method], self.arch, str(self.init or "imagenet")
        parent_card = parent_state = None
        if init in BACKBONES:  # `--init lite0`: that backbone's ImageNet weights
            if arch not in (None, init):
                raise TrainError(f"--init {init} is the {BACKBONES[init].description} ImageNet initialisation: "
                                 f"use it with --arch {init} (or leave --arch out)")
            arch = init
        elif init not in ("imagenet", "none"):
            path = Path(init).expanduser()
            if not path.exists():
                raise TrainError(f"--init {init}: no such checkpoint (use imagenet, none, a backbone name or a "
                                 ".pt path)")
            parent_card, parent_state = read_checkpoint(path)
            if parent_card.get("arch") == ENSEMBLE:
                raise TrainError(f"--init {init} is an ensemble of trained models, which is not trained further: "
                                 "train from one of its members (its card lists them) and combine again")
            if arch not in (None, parent_card["arch"]):
                raise TrainError(f"--init {init} is a {parent_card['arch']} checkpoint; --arch {arch} does not fit it")
            arch, init = parent_card["arch"], str(path)
        if self.negatives and (self.method != "triplet" or self.loss in ("arcface", "subcenter-arcface")):
            raise TrainError("--negatives adds unlabelled images to pair-loss batches: use it with --method triplet "
                             "and --loss triplet or multi-similarity (ArcFace learns one centre per character)")
        if self.method == "ft+dc" and parent_card is None:
            raise TrainError("--method ft+dc starts DeepCluster from a finetune checkpoint: give it with --init PATH")
        arch = arch or d["arch"]
        if arch not in ARCHS:
            raise TrainError(f"cannot train architecture {arch!r}; choose one of {', '.join(ARCHS)}")
        input_size = self.input_size or (parent_card or {}).get("input_size") or DEFAULT_INPUT_SIZE

        def pick(name):
            value = getattr(self, name)
            return d[name] if value is None else value

        config = replace(self, arch=arch, init=init, input_size=int(input_size), embed_dim=int(pick("embed_dim")),
                         epochs=int(pick("epochs")), lr=float(pick("lr")), batch_size=int(pick("batch_size")),
                         weight_decay=float(pick("weight_decay")))
        return config, parent_card, parent_state
