"""The blog's batch sampler for triplet training (not in pytorch-metric-learning, whose
`MPerClassSampler` has no random tail).

Each batch: characters in random order, each adding up to `per_class` of its images, while
that part holds at most `class_images` (so it ends between class_images - per_class and
class_images); then `random_extra` random images of characters not in that part, as extra
negatives, and `negatives` random unlabelled images (label None: no character, never a
positive; e.g. a pool of faces from elsewhere). One epoch visits every character once. A character with
more than `per_class` images shows a different window of its (seeded) shuffled images each
epoch, so all of them are used across epochs.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class BlogBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices (use as `DataLoader(batch_sampler=...)`).

    Deterministic for (seed, epoch): call `set_epoch(epoch)` before iterating, so an
    interrupted run can resume in the middle of an epoch with the same batches."""

    def __init__(self, labels: Sequence, per_class: int = 10, class_images: int = 100,
                 random_extra: int = 100, seed: int = 0, groups: Sequence | None = None, negatives: int = 0):
        if per_class < 1 or class_images < 1 or random_extra < 0 or negatives < 0:
            raise ValueError("per_class and class_images must be >= 1, random_extra and negatives >= 0")
        unlabelled = np.asarray([x is None for x in labels], bool)
        self.pool = np.flatnonzero(unlabelled)   # the unlabelled images: negatives only
        self.labelled = np.flatnonzero(~unlabelled)
        self.labels = np.asarray(["" if x is None else str(x) for x in labels])
        self.per_class, self.class_images, self.random_extra = per_class, class_images, random_extra
        self.negatives, self.seed, self.epoch = negatives, seed, 0
        classes, codes = np.unique(self.labels[self.labelled], return_inverse=True)
        self.classes = classes.tolist()
        # With `groups` (each image's source), a batch holds characters of one source only and
        # its random extras come from that source too: its negatives share the house style, so
        # the loss teaches "which character", not "which game".
        self.groups = None if groups is None else np.asarray([str(g) for g in groups])
        self.group_of = {} if groups is None else {c: self.groups[self.labelled][codes == k][0]
                                                   for k, c in enumerate(self.classes)}
        # A fixed shuffled order of each character's images; epochs walk through it in windows.
        base = np.random.default_rng([seed, 0x5EED])
        order = self.labelled[np.argsort(codes, kind="stable")]
        groups = np.split(order, np.cumsum(np.bincount(codes, minlength=len(classes)))[:-1])
        self.members = {c: base.permutation(g) for c, g in zip(self.classes, groups)}
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def window(self, cls: str, epoch: int) -> np.ndarray:
        """The images of `cls` used in `epoch`: up to per_class, continuing where the last epoch stopped."""
        members = self.members[cls]
        n = len(members)
        if n <= self.per_class:
            return members
        start = (epoch * self.per_class) % n
        return np.take(members, np.arange(start, start + self.per_class), mode="wrap")

    def parts(self, epoch: int | None = None) -> list[tuple[list[int], list[int]]]:
        """The epoch's batches as (character part, random extra part)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.classes))
        if self.groups is not None:  # one source after another (sources in random order)
            rank = {g: r for r, g in enumerate(rng.permutation(sorted(set(self.group_of.values()))))}
            order = sorted(order, key=lambda k: rank[self.group_of[self.classes[k]]])
        out, part, in_part = [], [], set()

        def close():
            extra = []
            if self.random_extra:
                outside = ~np.isin(self.labels, list(in_part)) & (self.labels != "")
                pool = np.flatnonzero(outside)
                if self.groups is not None:
                    same = np.flatnonzero(outside & (self.groups == self.group_of[next(iter(in_part))]))
                    pool = same if len(same) else pool
                take = min(self.random_extra, len(pool))
                extra = rng.choice(pool, size=take, replace=False).tolist()
            if self.negatives and len(self.pool):
                take = min(self.negatives, len(self.pool))
                extra += rng.choice(self.pool, size=take, replace=False).tolist()
            out.append(([int(i) for i in part], [int(i) for i in extra]))

        for k in order:
            cls = self.classes[k]
            window = self.window(cls, epoch).tolist()
            new_group = self.groups is not None and part and self.group_of[cls] != self.group_of[next(iter(in_part))]
            if part and (new_group or len(part) + len(window) > self.class_images):
                close()
                part, in_part = [], set()
            part.extend(window)
            in_part.add(cls)
        if part:
            close()
        self._cache = (epoch, out)
        return out

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        return [part + extra for part, extra in self.parts(epoch)]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())
