"""Training data: labelled folders, the split by character, images decoded once into memory,
and augmentation on tensors.

A labelled folder is `<DIR>/<character>/<images>` (deeper sub-folders of a character are
part of it; `depth=2` reads `<DIR>/<source>/<character>/...`). Images lying directly in DIR
have no label: a flat folder is an unlabelled pool (DeepCluster trains on it; the supervised
methods cannot use it).

Labels are what `evaluate` sees: the character folder name for a single labelled folder,
`<folder name>/<character>` when several are given, so two sources never merge.

Speed on a small CPU: every image is decoded once, letterboxed exactly like
`embed.preprocess` and kept as uint8 (N, 3, S, S). Training images are kept a little larger
than the input size (room for random crops); dev/test images at exactly the input size, so
their embeddings equal those of `illusort embed`. Augmentation works on whole batches of
tensors (one affine grid-sample for crop + flip + scale, then colour jitter).
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import IllusortError
from ..images import BadImage, find_images, read_image

TRAIN_SCALE = 1.15  # training images are stored this much above the input size


class TrainError(IllusortError, ValueError):
    """Training cannot start as asked; the message says why and what to do."""


@dataclass
class Item:
    path: Path
    label: str | None   # None: unlabelled (an image directly in its DIR)
    source: str         # the folder name it came from


@dataclass
class Collection:
    items: list[Item]

    def labelled(self) -> list[Item]:
        return [it for it in self.items if it.label is not None]

    def unlabelled(self) -> list[Item]:
        return [it for it in self.items if it.label is None]


def folder_name(d: Path) -> str:
    """The name a folder's characters are prefixed with (as its parent's listing shows it: a
    symlinked folder keeps its link name, `.` becomes the current folder's name)."""
    return Path(os.path.abspath(d)).name


def scan_folders(dirs, dev_dirs=(), depth: int = 1) -> tuple[Collection, list[Item]]:
    """Images of the training folders and of extra dev folders (all labelled dev characters).

    A character is the first `depth` folder levels below DIR (2 for a root of sources,
    `SOURCE/CHARACTER/...`, as `evaluate --label-depth 2`). Labels are prefixed with the
    folder name when more than one folder holds labelled images. The source of an image (for
    splitting each source 3:1:1) is its label minus the character part, else its folder."""
    dirs, dev_dirs = [Path(d) for d in dirs], [Path(d) for d in dev_dirs]
    found = {}
    for d in dirs + dev_dirs:
        if not d.is_dir():
            raise TrainError(f"{d} is not a folder" if d.exists() else f"folder {d} does not exist")
        if d not in found:
            found[d] = find_images(d, links="any")  # folders of links to data sets
    labelled_folders = [d for d in dict.fromkeys(dirs + dev_dirs) if any(len(p.parts) > depth for p in found[d])]
    names = [folder_name(d) for d in labelled_folders]
    if len(set(names)) < len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise TrainError(f"several labelled folders are named {', '.join(dup)}: labels would merge; "
                         "rename or symlink them under distinct names")
    prefix = len(labelled_folders) > 1

    def items_of(d: Path, dev: bool) -> list[Item]:
        name = folder_name(d)
        out = []
        for rel in found[d]:
            if len(rel.parts) <= depth:
                if dev:
                    continue  # a dev folder only contributes labelled images
                out.append(Item(d / rel, None, name))
                continue
            parts = ([name] if prefix else []) + list(rel.parts[:depth])
            out.append(Item(d / rel, "/".join(parts), "/".join(parts[:-1]) or name))
        return out

    train_items, dev_items = [], []
    for d in dict.fromkeys(dirs):
        train_items += items_of(d, False)
    for d in dict.fromkeys(dev_dirs):
        dev_items += items_of(d, True)
    collection = Collection(train_items)
    if not train_items:
        raise TrainError(f"no images found in {', '.join(map(str, dirs))}")
    return collection, dev_items


def split_characters(items: list[Item], seed: int = 0, fractions=(3, 1, 1)) -> dict[str, list[str]]:
    """Split characters (never images) train:dev:test = 3:1:1, per source folder so every source
    is represented in each part. Characters with fewer than 2 images go to train (no pair to
    score). Deterministic for a seed; the lists are sorted."""
    counts: dict[str, dict[str, int]] = {}
    for it in items:
        if it.label is not None:
            counts.setdefault(it.source, {}).setdefault(it.label, 0)
            counts[it.source][it.label] += 1
    total = sum(fractions)
    split = {"train": [], "dev": [], "test": []}
    for source in sorted(counts):
        chars = sorted(counts[source])
        few = [c for c in chars if counts[source][c] < 2]
        many = [c for c in chars if counts[source][c] >= 2]
        random.Random(f"{seed}:{source}").shuffle(many)
        n_dev = int(round(len(many) * fractions[1] / total))
        n_test = int(round(len(many) * fractions[2] / total))
        split["dev"] += many[:n_dev]
        split["test"] += many[n_dev:n_dev + n_test]
        split["train"] += many[n_dev + n_test:] + few
    return {k: sorted(v) for k, v in split.items()}


def characters_needed(fractions=(3, 1, 1), each: int = 2) -> int:
    """The fewest characters (of 2+ images, in one source) whose split gives dev and test
    `each` characters: pairs of two different characters are what scores a model."""
    n, total = each, sum(fractions)
    while round(n * fractions[1] / total) < each or round(n * fractions[2] / total) < each:
        n += 1
    return n


def inherited_split(card_path: Path, items: list[Item]) -> tuple[dict[str, list[str]], int]:
    """The dev and test characters of an earlier run's card, so a run on more data (new sources,
    pseudo-labelled folders) is scored on the same unseen characters; every other character
    trains. Returns (split, how many of the card's dev/test characters are absent here)."""
    from ..weights import ModelError, read_checkpoint

    try:
        card, _ = read_checkpoint(card_path)
    except (ModelError, OSError) as error:
        raise TrainError(f"--split-from: {error}") from None
    split = card.get("split")
    if not isinstance(split, dict) or not all(isinstance(split.get(p), list) and all(isinstance(c, str) for c in split[p])
                                              for p in ("dev", "test")):
        raise TrainError(f"--split-from {card_path}: its card holds no train/dev/test split of characters "
                         "(models made by `illusort train` record one)")
    both = sorted(set(split["dev"]) & set(split["test"]))
    if both:
        raise TrainError(f"--split-from {card_path}: its split lists {len(both)} character(s) as both dev and test "
                         f"(e.g. {both[0]}): a damaged card")
    labels = {it.label for it in items if it.label is not None}
    dev, test = labels & set(split["dev"]), labels & set(split["test"])
    if not dev:
        raise TrainError(f"--split-from {card_path}: none of its dev characters is in these folders (give the folder "
                         "it was trained on, with the same --label-depth; with several DIRs or --dev, characters "
                         "are named DIRNAME/<character>)")
    absent = len(set(split["dev"]) | set(split["test"])) - len(dev) - len(test)
    return {"train": sorted(labels - dev - test), "dev": sorted(dev), "test": sorted(test)}, absent


def without_held_pictures(train_items: list[Item], held_items: list[Item]) -> tuple[list[Item], int]:
    """Training items minus pictures that are also dev or test pictures under another name (a
    link, e.g. a picture of two characters linked into both folders, or a pseudo-labelled
    folder of links): unseen characters stay unseen. Returns (items, how many were dropped)."""
    held = {os.path.realpath(it.path) for it in held_items}
    kept = [it for it in train_items if os.path.realpath(it.path) not in held]
    return kept, len(train_items) - len(kept)


def _letterboxed(path: Path, size: int, faces: str = "off") -> np.ndarray:
    """uint8 (3, size, size): the exact pixels `embed` feeds the net (its largest face with
    face crops: a training image shows one character)."""
    from ..embed import crops
    from ..faces import DECODE_SIDE

    image, _ = read_image(path, max_side=size * 2 if faces == "off" else DECODE_SIDE)
    return crops(image, size, faces)[0][1].numpy()


class _Decode(torch.utils.data.Dataset):
    def __init__(self, paths, size, faces):
        self.paths, self.size, self.faces = paths, size, faces

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            return i, _letterboxed(self.paths[i], self.size, self.faces), None
        except BadImage as error:
            return i, None, str(error)


def _collate(batch):
    return batch


def decode_images(paths: list[Path], size: int, workers: int = 2, progress: bool = False,
                  desc: str = "decoding", faces: str = "off") -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """Decode every image once: (uint8 tensor (n_ok, 3, size, size), indices kept, [(path, reason)])."""
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    ok, bad = np.zeros(len(paths), bool), []
    loader = torch.utils.data.DataLoader(_Decode(paths, size, faces), batch_size=32, collate_fn=_collate,
                                         num_workers=workers if len(paths) > 64 else 0)
    from ..progress import progress_bar

    with progress_bar(total=len(paths), desc=desc, unit="img", enabled=progress and bool(paths)) as bar:
        for batch in loader:
            for i, array, error in batch:
                if error is None:
                    out[i] = torch.from_numpy(array)
                    ok[i] = True
                else:
                    bad.append((str(paths[i]), error))
            bar.update(len(batch))
    kept = np.flatnonzero(ok).tolist()
    return (out if ok.all() else out[torch.as_tensor(kept, dtype=torch.long)]), kept, bad


def train_store_size(input_size: int) -> int:
    return int(math.ceil(input_size * TRAIN_SCALE))


@dataclass
class Augment:
    """Random resized crop (area `scale`, aspect `ratio`: the framing varies from close-up to
    bust), horizontal flip, a small rotation, sometimes blur or a low-resolution copy (small
    faces in scenes, re-saved fan art), small brightness / contrast / saturation jitter. No
    hue jitter and no grey-scale: hair and eye colour are much of what tells characters
    apart."""
    scale: tuple[float, float] = (0.4, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5
    rotate: float = 10.0      # degrees, either way
    blur: float = 0.2         # share of images blurred (sigma up to 1.5 px)
    lowres: float = 0.2       # share of images seen at 1/4..1/2 resolution
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2

    def __call__(self, images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
        """uint8 (B, 3, S, S) -> float (B, 3, size, size) in [0, 1]."""
        b = images.shape[0]
        g = generator

        def uniform(low, high):
            return torch.rand(b, generator=g) * (high - low) + low

        area = uniform(*self.scale)
        log_r = uniform(math.log(self.ratio[0]), math.log(self.ratio[1]))
        w = (area * log_r.exp()).sqrt().clamp(max=1.0)
        h = (area / log_r.exp()).sqrt().clamp(max=1.0)
        cx = (torch.rand(b, generator=g) * 2 - 1) * (1 - w)
        cy = (torch.rand(b, generator=g) * 2 - 1) * (1 - h)
        sign = torch.where(torch.rand(b, generator=g) < self.flip, -1.0, 1.0)
        angle = uniform(-self.rotate, self.rotate) * (math.pi / 180)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = w * sign * cos, -h * sin, cx
        theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = w * sign * sin, h * cos, cy
        grid = F.affine_grid(theta, (b, 3, size, size), align_corners=False)
        x = F.grid_sample(images.float().div_(255), grid, mode="bilinear", padding_mode="border",
                          align_corners=False)
        x = self._degrade(x, size, g)
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        x = x * uniform(1 - self.brightness, 1 + self.brightness).view(b, 1, 1, 1)
        grey = (x * weights).sum(1, keepdim=True)
        c = uniform(1 - self.contrast, 1 + self.contrast).view(b, 1, 1, 1)
        x = (x - grey.mean((2, 3), keepdim=True)) * c + grey.mean((2, 3), keepdim=True)
        grey = (x * weights).sum(1, keepdim=True)
        s = uniform(1 - self.saturation, 1 + self.saturation).view(b, 1, 1, 1)
        x = (x - grey) * s + grey
        return x.clamp_(0, 1)

    def _degrade(self, x: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        pick = torch.rand(b, generator=g)
        low = pick < self.lowres
        if low.any():  # one random factor for the chosen images of this batch
            side = max(8, int(size * (0.25 + 0.25 * float(torch.rand(1, generator=g)))))
            small = F.interpolate(x[low], size=(side, side), mode="bilinear", antialias=True, align_corners=False)
            x[low] = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
        blur = (pick >= self.lowres) & (pick < self.lowres + self.blur)
        if blur.any():
            sigma = 0.5 + float(torch.rand(1, generator=g))
            r = torch.arange(-3, 4, dtype=torch.float32)
            k = torch.exp(-r ** 2 / (2 * sigma ** 2))
            k = (k / k.sum()).to(x.dtype)
            y = F.pad(x[blur], (3, 3, 3, 3), mode="replicate")
            y = F.conv2d(y, k.view(1, 1, 1, 7).repeat(3, 1, 1, 1), groups=3)
            x[blur] = F.conv2d(y, k.view(1, 1, 7, 1).repeat(3, 1, 1, 1), groups=3)
        return x

    def describe(self) -> dict:
        return {"crop_scale": list(self.scale), "crop_ratio": [round(r, 4) for r in self.ratio], "flip": self.flip,
                "rotate": self.rotate, "blur": self.blur, "lowres": self.lowres,
                "brightness": self.brightness, "contrast": self.contrast, "saturation": self.saturation,
                "hue": 0.0}


def plain_view(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> float (B, 3, size, size): the whole image, no augmentation."""
    x = images.float().div_(255)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp_(0, 1)
