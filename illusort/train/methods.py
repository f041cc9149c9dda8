"""What differs between the training methods: which batches, which loss, which extra layers.

- `Triplet` (the blog): the blog's batch sampler, `TripletMarginLoss(margin=0.1,
  distance=CosineSimilarity())` on the L2-normalised embeddings.
- `Classify` (the paper's ft): a linear classifier over the training characters on the
  trunk features (after the embedding head when there is one), cross-entropy.
- `DeepCluster` (the paper's dc, after Caron et al. 2018): each epoch, features of every
  training image -> PCA-whitening (<= 256 dims) -> L2 -> k-means into k pseudo-classes; a
  freshly initialised linear classifier; batches drawn uniformly over pseudo-classes;
  cross-entropy. Differences from the original, on purpose:
  * no Sobel filter: the original feeds grey-scale gradients so the net cannot cluster by
    colour, but for characters colour (hair, eyes) is identity, not a shortcut;
  * torchvision's plain VGG16 (no batch norm), the same network `finetune` trains, so ft
    weights feed dc unchanged (ft+dc) and ImageNet weights load when they can be had;
  * k is capped for small sets: k_used = min(k, max(2, N // 4)), at least ~4 images per
    pseudo-class on average (the default k=3000 over the 20,000 unlabelled faces is ~7);
  * the clustered features are fc2 after its ReLU (the original drops that last ReLU);
    k-means is scikit-learn's (k-means++ init, 20 iterations as the original's faiss run).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def train_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What a classifier sits on: trunk features, through the embedding head when there is one."""
    return net.head(net.features(x))


def _chunks(order: np.ndarray, batch_size: int) -> list[list[int]]:
    out = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    return [b for b in out if len(b) >= 2]  # batch norm cannot train on a single image


class Triplet:
    name = "triplet"

    def __init__(self, labels: list[str], *, margin=0.1, per_class=10, class_images=100, random_extra=100,
                 seed=0, loss="triplet", feature_dim=None, device="cpu", ce_weight=0.0, ce_scale=16.0,
                 groups=None, negatives=0, **_):
        from pytorch_metric_learning import distances, losses, miners

        from .sampler import BlogBatchSampler

        # Unlabelled images (label None) are negatives only: each gets a code of its own,
        # after the characters' codes, so it is never anyone's positive.
        unlabelled = np.asarray([label is None for label in labels], bool)
        codes = np.full(len(labels), -1)
        n_classes = 0
        if (~unlabelled).any():
            _, codes[~unlabelled] = np.unique(np.asarray(labels, object)[~unlabelled].astype(str),
                                              return_inverse=True)
            n_classes = int(codes.max()) + 1
        codes[unlabelled] = n_classes + np.arange(int(unlabelled.sum()))
        self.codes, self.n_classes = torch.as_tensor(codes, dtype=torch.long), n_classes
        self.sampler = BlogBatchSampler(labels, per_class, class_images, random_extra, seed, groups, negatives)
        self.miner = None
        if loss == "triplet":
            self.loss_fn = losses.TripletMarginLoss(margin=margin, distance=distances.CosineSimilarity())
        elif loss == "multi-similarity":  # the library's defaults (Wang et al. 2019), with its pair miner
            self.loss_fn = losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5)
            self.miner = miners.MultiSimilarityMiner(epsilon=0.1)
        elif loss in ("arcface", "subcenter-arcface"):  # a learned centre (or 3) per training character
            sizes = {"num_classes": n_classes, "embedding_size": feature_dim}
            self.loss_fn = (losses.ArcFaceLoss(**sizes) if loss == "arcface"
                            else losses.SubCenterArcFaceLoss(**sizes, sub_centers=3)).to(device)
        else:
            raise ValueError(f"unknown loss {loss!r}")
        # A classification term beside the pair loss (normalised softmax over the training
        # characters): every batch is pulled towards all characters' centres, not only the
        # few in the batch.
        self.ce_weight, self.ce_scale = float(ce_weight), float(ce_scale)
        self.proxies = None
        if self.ce_weight > 0:
            self.proxies = nn.Linear(feature_dim, n_classes, bias=False).to(device)

    def modules(self) -> list[nn.Module]:
        out = [self.loss_fn] if any(True for _ in self.loss_fn.parameters()) else []
        return out + ([self.proxies] if self.proxies is not None else [])

    def begin_epoch(self, net, epoch, images_fn, log) -> None:
        pass

    def batches(self, epoch: int) -> list[list[int]]:
        return [b for b in self.sampler.batches(epoch) if len(b) >= 2]

    def loss(self, net, x, idx) -> torch.Tensor:
        embeddings, codes = net(x), self.codes[idx].to(x.device)
        pairs = self.miner(embeddings, codes) if self.miner else None
        loss = self.loss_fn(embeddings, codes, pairs)
        labelled = codes < self.n_classes
        if self.proxies is not None and labelled.any():  # over the characters only
            logits = F.normalize(embeddings[labelled], dim=1) @ F.normalize(self.proxies.weight, dim=1).T
            loss = loss + self.ce_weight * F.cross_entropy(self.ce_scale * logits, codes[labelled])
        return loss

    def state(self) -> dict:
        out = {"loss": self.loss_fn.state_dict()}
        if self.proxies is not None:
            out["proxies"] = self.proxies.state_dict()
        return out

    def load_state(self, state: dict) -> None:
        if "loss" in state:
            self.loss_fn.load_state_dict(state["loss"])
        if self.proxies is not None and "proxies" in state:
            self.proxies.load_state_dict(state["proxies"])

    def step(self) -> None:
        pass


class Classify:
    """Supervised fine-tuning: cross-entropy over the training characters."""
    name = "finetune"

    def __init__(self, labels: list[str], *, feature_dim: int, batch_size=64, seed=0, device="cpu", **_):
        classes, codes = np.unique(np.asarray(labels), return_inverse=True)
        self.codes = torch.as_tensor(codes, dtype=torch.long)
        self.batch_size, self.seed, self.n = batch_size, seed, len(labels)
        torch.manual_seed(seed)
        self.classifier = nn.Linear(feature_dim, len(classes)).to(device)

    def modules(self) -> list[nn.Module]:
        return [self.classifier]

    def begin_epoch(self, net, epoch, images_fn, log) -> None:
        pass

    def batches(self, epoch: int) -> list[list[int]]:
        return _chunks(np.random.default_rng([self.seed, epoch, 1]).permutation(self.n), self.batch_size)

    def loss(self, net, x, idx) -> torch.Tensor:
        return F.cross_entropy(self.classifier(train_features(net, x)), self.codes[idx].to(x.device))

    def state(self) -> dict:
        return {"classifier": self.classifier.state_dict()}

    def load_state(self, state: dict) -> None:
        self.classifier.load_state_dict(state["classifier"])

    def step(self) -> None:
        pass


class DeepCluster:
    """k-means pseudo-labels recomputed every epoch; see the module docstring."""
    name = "deepcluster"

    def __init__(self, n_images: int, *, feature_dim: int, k=3000, batch_size=64, seed=0, device="cpu",
                 lr=1e-4, momentum=0.9, weight_decay=1e-5, pca_dims=256, **_):
        self.n, self.k, self.batch_size, self.seed, self.device = n_images, k, batch_size, seed, device
        self.k_used = effective_k(k, n_images)
        self.feature_dim, self.pca_dims = feature_dim, pca_dims
        self.opt_args = {"lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        self.pseudo: torch.Tensor | None = None
        self.classifier: nn.Linear | None = None
        self.optimizer = None

    def modules(self) -> list[nn.Module]:
        return []  # the head is re-initialised every epoch and has its own optimizer

    def _new_head(self, epoch: int) -> None:
        torch.manual_seed(int(np.random.SeedSequence([self.seed, epoch, 2]).generate_state(1)[0]))
        self.classifier = nn.Linear(self.feature_dim, self.k_used).to(self.device)
        self.classifier.weight.data.normal_(0, 0.01)  # as the original's top layer
        self.classifier.bias.data.zero_()
        self.optimizer = torch.optim.SGD(self.classifier.parameters(), **self.opt_args)

    def begin_epoch(self, net, epoch, features_fn, log) -> None:
        """Cluster the current features of all training images into pseudo-classes."""
        feats = features_fn()
        self.pseudo = torch.as_tensor(cluster_features(feats, self.k_used, self.pca_dims,
                                                       seed=self.seed * 1000 + epoch), dtype=torch.long)
        sizes = np.bincount(self.pseudo.numpy(), minlength=self.k_used)
        log(f"deepcluster: {self.n} images -> {int((sizes > 0).sum())}/{self.k_used} non-empty "
            f"pseudo-classes (largest {int(sizes.max())})")
        self._new_head(epoch)

    def batches(self, epoch: int) -> list[list[int]]:
        """N images drawn uniformly over pseudo-classes, then uniformly within one."""
        labels = self.pseudo.numpy()
        sizes = np.bincount(labels, minlength=self.k_used).astype(np.float64)
        p = 1.0 / sizes[labels]
        p /= p.sum()
        rng = np.random.default_rng([self.seed, epoch, 1])
        return _chunks(rng.choice(self.n, size=self.n, replace=True, p=p), self.batch_size)

    def loss(self, net, x, idx) -> torch.Tensor:
        return F.cross_entropy(self.classifier(train_features(net, x)), self.pseudo[idx].to(x.device))

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state(self) -> dict:
        if self.pseudo is None:
            return {}
        return {"pseudo": self.pseudo.clone(), "k_used": self.k_used, "classifier": self.classifier.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state(self, state: dict) -> None:
        if not state or len(state["pseudo"]) != self.n:
            return  # the data changed: the epoch starts over with fresh pseudo-labels
        self.k_used, self.pseudo = int(state["k_used"]), state["pseudo"]
        self._new_head(0)
        self.classifier.load_state_dict(state["classifier"])
        self.optimizer.load_state_dict(state["optimizer"])


def effective_k(k: int, n: int) -> int:
    """Cap the number of pseudo-classes: at least ~4 images each on average, at least 2 classes."""
    return int(max(2, min(k, n // 4)))


def cluster_features(feats: np.ndarray, k: int, pca_dims: int = 256, seed: int = 0) -> np.ndarray:
    """PCA-whiten to <= pca_dims, L2-normalise, k-means: pseudo-labels (int64, N)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    feats = np.asarray(feats, np.float32)
    n, d = feats.shape
    dims = int(min(pca_dims, d, n - 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate features (an untrained net): fewer distinct clusters
        if dims >= 1:
            feats = PCA(n_components=dims, whiten=True, random_state=seed).fit_transform(feats)
        feats = np.nan_to_num(np.asarray(feats, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True).clip(min=1e-12)
        kmeans = KMeans(n_clusters=k, n_init=1, max_iter=20, random_state=seed)
        return kmeans.fit_predict(feats).astype(np.int64)
