"""One training loop for every method: data in memory, epochs, dev EER, best checkpoint,
resume state, learning-curve log, and the final test scores written into the model card.

Files, for `--out models/NAME.pt`:
- `NAME.pt` + `NAME.json`: the best epoch so far by dev EER (every epoch when there is no
  dev set), a normal illusort checkpoint; at the end its card gets test scores.
- `NAME.last.pt`: resume state (weights, optimizer, epoch and batch, method state), written
  after every epoch, every `checkpoint_minutes` inside long epochs, and on Ctrl-C. Every
  random choice is a function of (seed, epoch, batch), so a resumed run continues with
  exactly the batches it would have seen.
- `NAME.log.jsonl`: one JSON line per epoch (loss, dev EER, speed) for learning curves.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from .. import nets
from ..embed import keep_freed_memory
from ..weights import FORMAT, ModelError, read_checkpoint, resolve_device, save_checkpoint
from .data import Augment, TrainError, decode_images, plain_view, scan_folders, split_characters, train_store_size
from .methods import Classify, DeepCluster, Triplet

METHODS = ("triplet", "finetune", "deepcluster", "ft+dc")
ARCHS = ("resnet18", "vgg16", "lite0")
# Per-method defaults (the sources' settings; batch sizes and epochs chosen for a CPU).
DEFAULTS = {
    "triplet": {"arch": "resnet18", "embed_dim": 500, "lr": 1e-3, "weight_decay": 1e-6, "batch_size": 100,
                "epochs": 30},
    "finetune": {"arch": "vgg16", "embed_dim": None, "lr": 1e-3, "weight_decay": 1e-5, "batch_size": 64,
                 "epochs": 20},
    "deepcluster": {"arch": "vgg16", "embed_dim": None, "lr": 1e-4, "weight_decay": 1e-5, "batch_size": 64,
                    "epochs": 20},
}
DEFAULTS["ft+dc"] = DEFAULTS["deepcluster"]
DEFAULT_INPUT_SIZE = 128
SHIP_LAYER = "fc1"  # VGG16's embedding layer in the shipped card (the paper's best)


def last_path(out: Path) -> Path:
    return Path(out).with_suffix(".last.pt")


def log_path(out: Path) -> Path:
    return Path(out).with_suffix(".log.jsonl")


def default_out(method: str, arch: str) -> Path:
    return Path("models") / f"{method.replace('+', '')}-{arch}.pt"


# --------------------------------------------------------------------------- configuration

def resolve_config(method: str, arch, init, epochs, lr, batch_size, input_size, embed_dim, k, seed,
                   per_class, random_extra, margin, momentum, weight_decay,
                   loss="triplet", optimizer="sgd", ce_weight=0.0) -> tuple[dict, dict | None, dict | None]:
    """All settings of a run, method defaults filled in. Returns (config, parent card, parent state)."""
    if method not in METHODS:
        raise TrainError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    d = DEFAULTS[method]
    parent_card = parent_state = None
    init = str(init or "imagenet")
    if init == "lite0":
        if arch not in (None, "lite0"):
            raise TrainError("--init lite0 is the EfficientNet-Lite0 ImageNet initialisation: use it with "
                             "--arch lite0 (or leave --arch out)")
        arch, init = "lite0", "lite0"
    elif init not in ("imagenet", "none"):
        path = Path(init).expanduser()
        if not path.exists():
            raise TrainError(f"--init {init}: no such checkpoint (use imagenet, lite0, none or a .pt path)")
        parent_card, parent_state = read_checkpoint(path)
        if arch not in (None, parent_card["arch"]):
            raise TrainError(f"--init {init} is a {parent_card['arch']} checkpoint; --arch {arch} does not fit it")
        arch, init = parent_card["arch"], str(path)
    if method == "ft+dc" and parent_card is None:
        raise TrainError("--method ft+dc starts DeepCluster from a finetune checkpoint: give it with --init PATH")
    arch = arch or d["arch"]
    if arch not in ARCHS:
        raise TrainError(f"cannot train architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if embed_dim is None:
        embed_dim = d["embed_dim"]
    embed_dim = int(embed_dim or 0) or None  # 0 or None: no head, the embedding is the trunk's features
    if input_size is None:
        input_size = int(parent_card.get("input_size") or DEFAULT_INPUT_SIZE) if parent_card else DEFAULT_INPUT_SIZE
    config = {
        "method": method, "arch": arch, "init": init, "embed_dim": embed_dim, "input_size": int(input_size),
        "epochs": int(epochs if epochs is not None else d["epochs"]),
        "lr": float(lr if lr is not None else d["lr"]),
        "batch_size": int(batch_size if batch_size is not None else d["batch_size"]),
        "optimizer": optimizer, "momentum": float(momentum),
        "weight_decay": float(weight_decay if weight_decay is not None else d["weight_decay"]),
        "seed": int(seed),
    }
    if method == "triplet":
        config.update(loss=loss, margin=float(margin), per_class=int(per_class), class_images=config["batch_size"],
                      random_extra=int(random_extra), ce_weight=float(ce_weight))
    if method in ("deepcluster", "ft+dc"):
        config.update(k=int(k), pca_dims=256)
    if arch == "vgg16":
        # Classifiers sit on fc2 (the paper's and DeepCluster's penultimate layer) unless an
        # embedding head is trained; the shipped embedding is fc1.
        config["train_layer"] = "fc2" if method != "triplet" and not embed_dim else SHIP_LAYER
        config["layer"] = SHIP_LAYER
    else:
        config["train_layer"] = config["layer"] = None
    return config, parent_card, parent_state


def build_net(config: dict, parent_card: dict | None, parent_state: dict | None) -> torch.nn.Module:
    arch, init = config["arch"], config["init"]
    try:
        if parent_card is None:
            net = nets.build(arch, embed_dim=config["embed_dim"], init="imagenet" if init == "lite0" else init,
                             layer=config["layer"], input_size=config["input_size"])
        else:
            net = nets.build(arch, embed_dim=config["embed_dim"], init="none", layer=config["layer"],
                             input_size=config["input_size"])
            state = parent_state
            if parent_card.get("embed_dim") != config["embed_dim"]:  # a new head: keep only the trunk
                state = {k: v for k, v in state.items() if not k.startswith("head.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            if unexpected or [m for m in missing if not m.startswith("head.")]:
                raise ModelError(f"--init {init}: weights do not fit {arch} "
                                 f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    except nets.WeightsUnavailable as error:
        raise ModelError(str(error)) from None
    return net


@contextlib.contextmanager
def vgg_layer(net, layer):
    """Temporarily switch a VGG16 trunk's output layer (no-op for other nets)."""
    trunk = getattr(net, "trunk", None)
    if layer is None or not hasattr(trunk, "taps"):
        yield
        return
    old = trunk.layer
    trunk.layer = layer
    try:
        yield
    finally:
        trunk.layer = old


def batch_seed(*parts) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, after the resume state was saved at `path`."""

    def __init__(self, path: Path, epoch: int, batch: int):
        super().__init__(f"training state saved in {path} (epoch {epoch + 1}, batch {batch})")
        self.path, self.epoch, self.batch = path, epoch, batch


class _StopFlag:
    """First Ctrl-C asks the loop to stop after the current batch (and save); a second one aborts."""

    def __init__(self):
        self.stop = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)

            def handler(signum, frame):
                if self.stop:
                    raise KeyboardInterrupt
                self.stop = True
            signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


# --------------------------------------------------------------------------- the loop

def embed_tensor(net, images: torch.Tensor, size: int, device: str, batch_size: int = 64) -> np.ndarray:
    """Embeddings (L2-normalised, numpy) of uint8 images, no augmentation, in eval mode."""
    return _forward_all(net, images, size, device, batch_size, lambda n, x: n(x))


def _forward_all(net, images, size, device, batch_size, fn) -> np.ndarray:
    was_training = net.training
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = to_device(plain_view(images[start:start + batch_size], size), device)
            out.append(fn(net, x).float().cpu().numpy())
    net.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def to_device(x: torch.Tensor, device: str) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if device == "cpu" else x


def dev_scores(vectors, labels, seed=0) -> dict | None:
    """EER and thresholds; over pairs inside one source when labels are `SOURCE/CHARACTER`
    from several sources (cross-game pairs are easy and would set the thresholds too low)."""
    from ..metrics import embedding_eer, source_of

    if len(set(labels)) < 2 or len(labels) == len(set(labels)):
        return None
    groups = [source_of(x) for x in labels]
    try:
        result = embedding_eer(vectors, labels, seed=seed, groups=groups if len(set(groups)) > 1 else None)
    except ValueError:
        return None
    return _plain(result)


def _plain(obj):
    """numpy scalars -> Python (JSON and `torch.load(weights_only=True)` safe)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def train(dirs, method: str = "triplet", out=None, *, arch: str | None = None, init: str = "imagenet",
          epochs: int | None = None, lr: float | None = None, batch_size: int | None = None,
          device: str = "auto", input_size: int | None = None, embed_dim: int | None = None, k: int = 3000,
          seed: int = 0, resume: bool = False, overwrite: bool = False, workers: int | None = None,
          dev_dirs=(), label_depth: int = 1, per_class: int = 10, random_extra: int = 100, margin: float = 0.1,
          loss: str = "triplet", optimizer: str = "sgd", faces: str = "off", ce_weight: float = 0.0,
          momentum: float = 0.9, weight_decay: float | None = None, progress: bool = True,
          checkpoint_minutes: float = 10.0, command: str | None = None, log=None) -> dict:
    """Train a model on labelled folders (`DIR/<character>/<images>`; DeepCluster also takes
    flat unlabelled folders) and write `out` with its model card. Returns the card.

    `init`: imagenet | lite0 | none | PATH of an illusort checkpoint. `resume=True` continues
    `out`'s interrupted (or finished: give more `epochs`) run with its stored settings."""
    log = log or (lambda message: print(message, file=sys.stderr))
    dirs = [Path(d) for d in ([dirs] if isinstance(dirs, (str, Path)) else dirs)]
    if not dirs:
        raise TrainError("give at least one folder of images")
    workers = min(4, os.cpu_count() or 1) if workers is None else workers
    keep_freed_memory()
    device = resolve_device(device)
    state = None
    if out is not None and Path(out).suffix != ".pt":
        out = Path(out).with_name(Path(out).name + ".pt")
    if resume:
        if out is None:
            out = default_out(method, arch or ("lite0" if init == "lite0" else DEFAULTS[method]["arch"]))
        out = Path(out)
        if not last_path(out).exists():
            raise TrainError(f"nothing to resume: {last_path(out)} does not exist (give the --out of the "
                             "interrupted run)")
        try:
            blob = torch.load(last_path(out), map_location="cpu", weights_only=True)
        except Exception as error:
            raise TrainError(f"{last_path(out)} cannot be read ({type(error).__name__}); "
                             "start again with --overwrite") from None
        if not isinstance(blob, dict) or blob.get("format") != FORMAT or "resume" not in blob:
            raise TrainError(f"{last_path(out)} is not an illusort resume file")
        state = blob["resume"]
        config = dict(state["config"])
        if epochs is not None:
            config["epochs"] = int(epochs)
        parent_card = parent_state = None
        if config["init"] not in ("imagenet", "none", "lite0") and Path(config["init"]).exists():
            parent_card, _ = read_checkpoint(Path(config["init"]))
    else:
        config, parent_card, parent_state = resolve_config(
            method, arch, init, epochs, lr, batch_size, input_size, embed_dim, k, seed, per_class,
            random_extra, margin, momentum, weight_decay, loss, optimizer, ce_weight)
        config["label_depth"] = int(label_depth)
        config["faces"] = faces
        out = Path(out) if out else default_out(method, config["arch"])
        if not overwrite and (out.exists() or last_path(out).exists()):
            raise TrainError(f"{out} already exists: add --resume to continue its training, or --overwrite "
                             "to start again")
    method, seed = config["method"], config["seed"]
    dc = method in ("deepcluster", "ft+dc")
    size = config["input_size"]

    # ---- the network first (a missing ImageNet download fails before any decoding)
    if state:
        net = nets.build(config["arch"], embed_dim=config["embed_dim"], init="none", layer=config["layer"],
                         input_size=size)
        net.load_state_dict(blob["state_dict"])
    else:
        torch.manual_seed(seed)  # a random init (and any new head) is reproducible too
        net = build_net(config, parent_card, parent_state)
    net.to(device)
    if device == "cpu":
        net = net.to(memory_format=torch.channels_last)
    net.train()

    # ---- data
    collection, dev_items = scan_folders(dirs, dev_dirs, config.get("label_depth", 1))
    split = state["split"] if state else split_characters(collection.items, seed)
    if not state:
        split = {"seed": seed, **split}
        split["dev"] = sorted(set(split["dev"]) | {it.label for it in dev_items})
    train_set, dev_set, test_set = set(split["train"]), set(split["dev"]), set(split["test"])
    train_items = [it for it in collection.items if it.label in train_set or (dc and it.label is None)]
    dev_items = [it for it in collection.items + dev_items if it.label in dev_set]
    test_items = [it for it in collection.items if it.label in test_set]
    n_unlabelled = len(collection.unlabelled())
    if not dc and not collection.labelled():
        raise TrainError(f"{method} needs labelled folders (DIR/<character>/<images>); "
                         f"{', '.join(map(str, dirs))} hold only unlabelled images (use --method deepcluster)")
    if not dc and n_unlabelled:
        log(f"note: {n_unlabelled} images lie directly in a DIR (no character folder): {method} ignores them")
    if len(train_items) < 2:
        raise TrainError(f"too few training images ({len(train_items)})")

    store = train_store_size(size)
    faces = config.get("faces", "off")
    if faces != "off":
        from ..faces import check_detector

        check_detector()
    train_images, kept, bad = decode_images([it.path for it in train_items], store, workers, progress,
                                            "decoding train", faces)
    train_items = [train_items[i] for i in kept]
    dev_images, kept, bad_dev = decode_images([it.path for it in dev_items], size, workers, progress,
                                              "decoding dev", faces)
    dev_items = [dev_items[i] for i in kept]
    test_images, kept, bad_test = decode_images([it.path for it in test_items], size, workers, progress,
                                                "decoding test", faces)
    test_items = [test_items[i] for i in kept]
    bad += bad_dev + bad_test
    for path, reason in bad[:10]:
        log(f"skipped {path}: {reason}")
    if len(bad) > 10:
        log(f"... and {len(bad) - 10} more unreadable images skipped")
    dev_labels = [it.label for it in dev_items]
    if len(set(dev_labels)) < 2:
        log("note: no dev characters (too few labelled characters, or unlabelled data without --dev): every "
            "epoch replaces the last, and the model gets no threshold")
    data_summary = _data_summary(collection, dirs, dev_dirs, train_items, dev_items, test_items, len(bad), dc)

    # ---- model and method
    feature_dim = net.embed_dim if config["embed_dim"] else net.feature_dim
    common = {"seed": seed, "device": device, "batch_size": config["batch_size"], "feature_dim": feature_dim}
    if method == "triplet":
        strategy = Triplet([it.label for it in train_items], **{**config, **common})
    elif method == "finetune":
        strategy = Classify([it.label for it in train_items], **common)
    else:
        strategy = DeepCluster(len(train_items), k=config["k"], lr=config["lr"], momentum=config["momentum"],
                               weight_decay=config["weight_decay"], pca_dims=config["pca_dims"], **common)
        config["k_used"] = strategy.k_used
    # One optimizer for the trunk (and a persistent classifier); DeepCluster's per-epoch head has its own.
    params = list(net.parameters()) + [p for m in strategy.modules() for p in m.parameters()]
    if config.get("optimizer", "sgd") == "adamw":
        optimizer = torch.optim.AdamW(params, lr=config["lr"], weight_decay=config["weight_decay"])
    else:  # the sources' choice
        optimizer = torch.optim.SGD(params, lr=config["lr"], momentum=config["momentum"],
                                    weight_decay=config["weight_decay"])
    augment = Augment()
    start_epoch, start_batch, best = 0, 0, {"eer": None, "epoch": None, "threshold": None, "dev": None}
    loss_sum, loss_n = 0.0, 0
    if state:
        start_epoch, start_batch, best = int(state["epoch"]), int(state["batch"]), dict(state["best"])
        loss_sum, loss_n = float(state.get("loss_sum", 0.0)), int(state.get("loss_n", 0))
        optimizer.load_state_dict(state["optimizer"])
        strategy.load_state(state.get("strategy") or {})
        if dc and strategy.pseudo is None:
            start_batch = 0  # pseudo-labels could not be restored: redo the epoch
        if start_epoch >= config["epochs"]:
            log(f"{out} has trained {start_epoch} epochs already: give a larger --epochs to train on; "
                "scoring the test characters again")
        else:
            log(f"resuming {out} at epoch {start_epoch + 1}" + (f", batch {start_batch + 1}" if start_batch else ""))
    elif log_path(out).exists():
        log_path(out).unlink()

    base_card = {
        "name": out.stem, "arch": config["arch"], "init": config["init"], "embed_dim": config["embed_dim"],
        "layer": config["layer"], "input_size": size, "method": method,
        "hyper": {k: v for k, v in config.items() if k not in ("method", "arch", "init", "embed_dim", "layer",
                                                                "input_size")} | {"augment": augment.describe()},
        "data": data_summary, "split": split, "trained": True,
        "command": command or " ".join(shlex.quote(a) for a in sys.argv),
        "torch": str(torch.__version__),
    }
    if parent_card:
        base_card["parent"] = {"name": parent_card.get("name"), "method": parent_card.get("method"),
                               "path": config["init"]}

    def card_now(epochs_done: int) -> dict:
        card = dict(base_card, date=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                    epochs=epochs_done, best_epoch=best["epoch"], threshold=best["threshold"],
                    known_threshold=(best["dev"] or {}).get("threshold_far1"))
        card["metrics"] = {"dev": best["dev"]}
        return _plain(card)

    def save_last(epoch: int, batch: int, finished: bool = False) -> None:
        resume_state = {"config": config, "split": split, "epoch": epoch, "batch": batch,
                        "optimizer": optimizer.state_dict(), "strategy": strategy.state(),
                        "best": best, "loss_sum": loss_sum, "loss_n": loss_n, "finished": finished}
        card = card_now(epoch)
        sd = {key: value.detach().cpu() for key, value in net.state_dict().items()}
        path = last_path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"format": FORMAT, "card": card, "state_dict": sd, "resume": resume_state}, tmp)
        os.replace(tmp, path)

    def features_fn():
        with vgg_layer(net, config["train_layer"]):
            return _forward_all(net, train_images, size, device, 64,
                                lambda n, x: n.head(n.features(x)))

    from tqdm import tqdm

    last_save = time.monotonic()
    with _StopFlag() as flag, vgg_layer(net, config["train_layer"]):
        for epoch in range(start_epoch, config["epochs"]):
            t0 = time.monotonic()
            if start_batch == 0:  # (else: resuming inside an epoch whose state was restored)
                loss_sum, loss_n = 0.0, 0
                strategy.begin_epoch(net, epoch, features_fn, log)
                if flag.stop:  # Ctrl-C while clustering: keep the state at the epoch's start
                    save_last(epoch, 0)
                    raise TrainingInterrupted(last_path(out), epoch, 0)
            batches = strategy.batches(epoch)
            seen, t1 = 0, time.monotonic()
            bar = tqdm(total=len(batches), initial=start_batch, desc=f"epoch {epoch + 1}/{config['epochs']}",
                       unit="batch", disable=not progress, file=sys.stderr, leave=True)
            for b in range(start_batch, len(batches)):
                idx = batches[b]
                s = batch_seed(seed, epoch, b)
                torch.manual_seed(s)  # dropout
                x = to_device(augment(train_images[idx], size, torch.Generator().manual_seed(s)), device)
                loss = strategy.loss(net, x, torch.as_tensor(idx))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                strategy.step()
                loss_sum, loss_n, seen = loss_sum + loss.item(), loss_n + 1, seen + len(idx)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / loss_n:.4f}",
                                dev_eer="-" if best["eer"] is None else f"{best['eer']:.3f}")
                if flag.stop:
                    save_last(epoch, b + 1)
                    bar.close()
                    raise TrainingInterrupted(last_path(out), epoch, b + 1)
                if time.monotonic() - last_save > checkpoint_minutes * 60 and b + 1 < len(batches):
                    save_last(epoch, b + 1)
                    last_save = time.monotonic()
            start_batch = 0
            train_seconds = time.monotonic() - t1  # the batches only (not clustering or evaluation)
            # ---- dev evaluation, best checkpoint
            with vgg_layer(net, config["layer"]):
                dev = dev_scores(embed_tensor(net, dev_images, size, device), dev_labels, seed) \
                    if len(dev_images) else None
                if dev is not None:
                    improved = best["eer"] is None or dev["eer"] < best["eer"]
                else:  # no dev set (unlabelled data): the last epoch is the best we know
                    improved = best["eer"] is None
                if improved:
                    best.update(epoch=epoch + 1, **({"eer": dev["eer"], "threshold": dev["threshold"], "dev": dev}
                                                    if dev else {}))
                    save_checkpoint(out, net, card_now(epoch + 1))
            bar.set_postfix(loss=f"{loss_sum / max(loss_n, 1):.4f}",
                            dev_eer="-" if dev is None else f"{dev['eer']:.3f}")
            bar.close()
            entry = {"epoch": epoch + 1, "loss": loss_sum / max(loss_n, 1), "batches": len(batches),
                     "dev_eer": dev and dev["eer"], "dev_threshold": dev and dev["threshold"],
                     "best_epoch": best["epoch"], "best_dev_eer": best["eer"],
                     "train_seconds": round(train_seconds, 2), "epoch_seconds": round(time.monotonic() - t0, 2),
                     "images_per_s": round(seen / train_seconds, 2) if seen and train_seconds > 0 else None,
                     "lr": config["lr"], "time": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
            if dc:
                entry["pseudo_classes"] = int(len(np.unique(strategy.pseudo.numpy())))
            with open(log_path(out), "a", encoding="utf-8") as f:
                f.write(json.dumps(_plain(entry)) + "\n")
            loss_sum, loss_n = 0.0, 0
            save_last(epoch + 1, 0, finished=epoch + 1 == config["epochs"])
            if flag.stop:
                raise TrainingInterrupted(last_path(out), epoch + 1, 0)
            last_save = time.monotonic()

    # ---- final: the best epoch on the test characters
    if not out.exists():  # resumed a finished run with no more epochs and no best file
        with vgg_layer(net, config["layer"]):
            save_checkpoint(out, net, card_now(start_epoch))
    card, best_state = read_checkpoint(out)
    net.load_state_dict(best_state)
    card = card_now(max(start_epoch, config["epochs"]))
    card["metrics"]["test"] = score_test_set(net, config["layer"], test_images, [it.label for it in test_items],
                                          [it.source for it in test_items], size, device, seed)
    with vgg_layer(net, config["layer"]):
        save_checkpoint(out, net, card)
    if card["metrics"]["test"]:
        t = card["metrics"]["test"]
        log(f"test: EER {t['eer']:.3f}" + (f", AMI {t['clustering']['ami']:.3f}" if t.get("clustering") else "")
            + f" ({t['characters']} unseen characters, {t['images']} images)")
    log(f"model written to {out} (card {out.with_suffix('.json')}; resume state {last_path(out)})")
    return card


def score_test_set(net, layer, images, labels, sources, size, device, seed) -> dict | None:
    """EER (+ buckets, per source) and clustering scores of the test characters."""
    from ..cluster import cluster_embeddings
    from ..metrics import clustering_scores

    if not len(images):
        return None
    with vgg_layer(net, layer):
        vectors = embed_tensor(net, images, size, device)
    from ..metrics import source_scores

    if len(set(labels)) < 2 or len(labels) == len(set(labels)):
        return None
    try:
        result = source_scores(vectors, labels, seed)
    except ValueError:
        return None
    result.update(characters=len(set(labels)), images=len(labels))
    clustering = cluster_embeddings(vectors, min_cluster_size=10, seed=seed, strictness=None, pca_dims=0)
    result["clustering"] = {**clustering_scores(labels, clustering.labels), "params": clustering.params}
    return _plain(result)


def _data_summary(collection, dirs, dev_dirs, train_items, dev_items, test_items, skipped, dc) -> dict:
    def chars(items):
        return len({it.label for it in items if it.label is not None})

    return {
        "folders": [str(d) for d in dirs], "dev_folders": [str(d) for d in dev_dirs],
        "characters": {"train": chars(train_items), "dev": chars(dev_items), "test": chars(test_items)},
        "images": {"train": len(train_items), "dev": len(dev_items), "test": len(test_items)},
        "unlabelled_images": sum(it.label is None for it in train_items) if dc else 0,
        "skipped": skipped,
    }
