"""One trainer for every method: data in memory, epochs, dev EER, best checkpoint, resume
state, learning-curve log, and the final test scores written into the model card.

What differs between methods (batches, loss, extra layers) is in `methods.py`; the settings
are one `TrainConfig` (`config.py`); scoring the dev and test characters is in `scoring.py`.
`Trainer.train` is the loop; each step is a method (`setup`, `resume`, `run_epoch`,
`evaluate_dev`, `save`, `finish`), with no closure over loop state.

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

import datetime as dt
import json
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
from ..progress import progress_bar
from ..weights import FORMAT, ModelError, load_blob, read_checkpoint, resolve_device, save_checkpoint
from .config import ARCHS, DEFAULTS, METHODS, PCA_DIMS, TrainConfig  # noqa: F401 (re-exported)
from .data import (Augment, TrainError, decode_images, inherited_split, scan_folders, split_characters,
                   train_store_size, without_held_pictures)
from .methods import Classify, DeepCluster, Triplet
from .scoring import dev_scores, embed_tensor, plain, score_test_set, to_device, too_few_characters, vgg_layer


def last_path(out: Path) -> Path:
    return Path(out).with_suffix(".last.pt")


def log_path(out: Path) -> Path:
    return Path(out).with_suffix(".log.jsonl")


def default_out(method: str, arch: str) -> Path:
    return Path("models") / f"{method.replace('+', '')}-{arch}.pt"


def build_net(config: TrainConfig, parent_card: dict | None, parent_state: dict | None) -> torch.nn.Module:
    """A fresh net for `config`: ImageNet/random weights, or a parent checkpoint's (its trunk
    only when the embedding head changes)."""
    try:
        net = nets.build(config.arch, embed_dim=config.embed_dim, init=config.pretrained if parent_card is None
                         else "none", layer=config.layer, input_size=config.input_size)
    except nets.WeightsUnavailable as error:
        raise ModelError(str(error)) from None
    if parent_card is not None:
        state = parent_state
        if (parent_card.get("embed_dim") or 0) != config.embed_dim:
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or [m for m in missing if not m.startswith("head.")]:
            raise ModelError(f"--init {config.init}: weights do not fit {config.arch} "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return net


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


class Trainer:
    """A training run: `Trainer(dirs, config, out, ...).train()` returns the final card.

    `config` is resolved here (method defaults filled in) or, with `resume=True`, read
    from OUT's resume state; `epochs` then sets a new total."""

    def __init__(self, dirs, config: TrainConfig, out=None, *, resume: bool = False, overwrite: bool = False,
                 device: str = "auto", workers: int | None = None, dev_dirs=(), progress: bool = True,
                 checkpoint_minutes: float = 10.0, command: str | None = None, log=None, epochs: int | None = None):
        self.dirs = [Path(d) for d in ([dirs] if isinstance(dirs, (str, Path)) else dirs)]
        if not self.dirs:
            raise TrainError("give at least one folder of images")
        self.dev_dirs, self.progress, self.checkpoint_minutes = [Path(d) for d in dev_dirs], progress, checkpoint_minutes
        self.workers = min(4, os.cpu_count() or 1) if workers is None else workers
        self.log = log or (lambda message: print(message, file=sys.stderr))
        self.command = command or " ".join(shlex.quote(a) for a in sys.argv)
        self.device = resolve_device(device)
        if out is not None and Path(out).suffix != ".pt":
            out = Path(out).with_name(Path(out).name + ".pt")
        self.state = None
        if resume:
            self.out = Path(out or default_out(config.method, config.arch or DEFAULTS[config.method]["arch"]))
            self.state = self.read_resume_state()
            self.config = TrainConfig.from_dict(self.state["config"])
            if epochs is not None:
                self.config = TrainConfig.from_dict({**self.config.to_dict(), "epochs": int(epochs)})
            parent = self.config.parent
            self.parent_card = read_checkpoint(parent)[0] if parent and parent.exists() else None
            self.parent_state = None
        else:
            self.config, self.parent_card, self.parent_state = config.resolve()
            self.out = Path(out) if out else default_out(self.config.method, self.config.arch)
            if not overwrite and (self.out.exists() or last_path(self.out).exists()):
                raise TrainError(f"{self.out} already exists: add --resume to continue its training, or "
                                 "--overwrite to start again")
        self.augment = Augment()
        self.best = {"eer": None, "epoch": None, "threshold": None, "dev": None}
        self.start_epoch = self.start_batch = 0
        self.loss_sum, self.loss_n = 0.0, 0

    # ---- setup

    def read_resume_state(self) -> dict:
        path = last_path(self.out)
        if not path.exists():
            raise TrainError(f"nothing to resume: {path} does not exist (give the --out of the interrupted run)")
        try:
            blob = load_blob(path)
        except ModelError:
            raise TrainError(f"{path} cannot be read; start again with --overwrite") from None
        if "resume" not in blob:
            raise TrainError(f"{path} is not an illusort resume file")
        self.resume_weights = blob["state_dict"]
        return blob["resume"]

    def setup(self) -> None:
        """The network (first: a missing ImageNet download fails before decoding), the data,
        the method and the optimizer."""
        keep_freed_memory()
        c = self.config
        if self.state:
            self.net = nets.build(c.arch, embed_dim=c.embed_dim, init="none", layer=c.layer,
                                  input_size=c.input_size)
            self.net.load_state_dict(self.resume_weights)
        else:
            torch.manual_seed(c.seed)  # a random init (and any new head) is reproducible too
            self.net = build_net(c, self.parent_card, self.parent_state)
        self.net.to(self.device)
        if self.device == "cpu":
            self.net = self.net.to(memory_format=torch.channels_last)
        self.net.train()
        self.load_data()
        feature_dim = self.net.embed_dim if c.embed_dim else self.net.feature_dim
        common = {"seed": c.seed, "device": self.device, "batch_size": c.batch_size, "feature_dim": feature_dim}
        if c.method == "triplet":
            self.strategy = Triplet([it.label for it in self.train_items], margin=c.margin, per_class=c.per_class,
                                    class_images=c.batch_size, random_extra=c.random_extra, loss=c.loss,
                                    ce_weight=c.ce_weight, negatives=c.negatives,
                                    groups=[it.source for it in self.train_items] if c.source_batches else None,
                                    **common)
        elif c.method == "finetune":
            self.strategy = Classify([it.label for it in self.train_items], **common)
        else:
            self.strategy = DeepCluster(len(self.train_items), k=c.k, lr=c.lr, momentum=c.momentum,
                                        weight_decay=c.weight_decay, pca_dims=PCA_DIMS, **common)
        # One optimizer for the trunk (and a persistent classifier); DeepCluster's per-epoch head has its own.
        params = list(self.net.parameters()) + [p for m in self.strategy.modules() for p in m.parameters()]
        if c.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        else:  # the sources' choice
            self.optimizer = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    def load_data(self) -> None:
        """Scan, split by character (or take the stored split) and decode every image once."""
        c = self.config
        collection, extra_dev = scan_folders(self.dirs, self.dev_dirs, c.label_depth)
        if self.state:
            self.split = self.state["split"]
        else:
            if c.split_from:
                split, absent = inherited_split(Path(c.split_from), collection.items)
                if absent:
                    self.log(f"note: {absent} dev/test character(s) of {c.split_from} are not in these folders")
            else:
                split = split_characters(collection.items, c.seed)
            split["dev"] = sorted(set(split["dev"]) | {it.label for it in extra_dev})
            self.split = {"seed": c.seed, **split}
        parts = {name: set(self.split[name]) for name in ("train", "dev", "test")}
        uses_unlabelled = c.dc or (c.method == "triplet" and c.negatives > 0)
        train_items = [it for it in collection.items
                       if it.label in parts["train"] or (uses_unlabelled and it.label is None)]
        train_items, shared = without_held_pictures(
            train_items, [it for it in collection.items + extra_dev if it.label in parts["dev"] | parts["test"]])
        if shared:
            self.log(f"note: {shared} training pictures are also dev/test pictures under another character (links): "
                     "left out of training")
        n_unlabelled = len(collection.unlabelled())
        if not c.dc and not collection.labelled():
            raise TrainError(f"{c.method} needs labelled folders (DIR/<character>/<images>); "
                             f"{', '.join(map(str, self.dirs))} hold only unlabelled images (use --method deepcluster)")
        if not uses_unlabelled and n_unlabelled:
            hint = " (--negatives N adds N of them to each batch)" if c.method == "triplet" else ""
            self.log(f"note: {n_unlabelled} images have no character folder (they lie above the character level): {c.method} "
                     f"ignores them{hint}")
        elif c.negatives and not n_unlabelled:
            self.log("note: --negatives found no unlabelled images (images above the character level, e.g. a flat folder)")
        if len(train_items) < 2:
            raise TrainError(f"too few training images ({len(train_items)})")
        if c.faces != "off":
            from ..faces import check_detector

            check_detector()
        size, bad = c.input_size, []

        def decoded(items, store, name):
            images, kept, failed = decode_images([it.path for it in items], store, self.workers, self.progress,
                                                 f"decoding {name}", c.faces)
            bad.extend(failed)
            return images, [items[i] for i in kept]

        self.train_images, self.train_items = decoded(train_items, train_store_size(size), "train")
        self.dev_images, self.dev_items = decoded(
            [it for it in collection.items + extra_dev if it.label in parts["dev"]], size, "dev")
        self.test_images, self.test_items = decoded(
            [it for it in collection.items if it.label in parts["test"]], size, "test")
        for path, reason in bad[:10]:
            self.log(f"skipped {path}: {reason}")
        if len(bad) > 10:
            self.log(f"... and {len(bad) - 10} more unreadable images skipped")
        if c.source_batches and len({it.source for it in self.train_items if it.label is not None}) < 2:
            self.log("note: --source-batches: every training character comes from one source, so batches are "
                     "as without it (give a folder of sources with --label-depth 2, or several DIRs)")
        dev_characters = len({it.label for it in self.dev_items})
        if dev_characters < 2:
            self.log(too_few_characters(len({it.label for it in collection.items if it.label is not None}),
                                        dev_characters))
        self.data_summary = _data_summary(collection, self.dirs, self.dev_dirs, self.train_items, self.dev_items,
                                          self.test_items, len(bad))

    def resume(self) -> None:
        """Restore the optimizer, method state, position and best epoch of the resume state."""
        state = self.state
        self.start_epoch, self.start_batch, self.best = int(state["epoch"]), int(state["batch"]), dict(state["best"])
        self.loss_sum, self.loss_n = float(state.get("loss_sum", 0.0)), int(state.get("loss_n", 0))
        self.optimizer.load_state_dict(state["optimizer"])
        self.strategy.load_state(state.get("strategy") or {})
        if self.config.dc and self.strategy.pseudo is None:
            self.start_batch = 0  # pseudo-labels could not be restored: redo the epoch
        if self.start_epoch >= self.config.epochs:
            self.log(f"{self.out} has trained {self.start_epoch} epochs already: give a larger --epochs to train "
                     "on; scoring the test characters again")
        else:
            self.log(f"resuming {self.out} at epoch {self.start_epoch + 1}"
                     + (f", batch {self.start_batch + 1}" if self.start_batch else ""))

    # ---- the loop

    def train(self) -> dict:
        self.setup()
        if self.state:
            self.resume()
        elif log_path(self.out).exists():
            log_path(self.out).unlink()
        with _StopFlag() as flag, vgg_layer(self.net, self.config.train_layer):
            for epoch in range(self.start_epoch, self.config.epochs):
                started = time.monotonic()
                seen, seconds = self.run_epoch(epoch, flag)
                dev = self.evaluate_dev(epoch)
                self.end_epoch(epoch, dev, seen, seconds, started)
                if flag.stop:
                    raise TrainingInterrupted(last_path(self.out), epoch + 1, 0)
        return self.finish()

    def run_epoch(self, epoch: int, flag: _StopFlag) -> tuple[int, float]:
        """The epoch's batches (from `start_batch` when resuming inside it). Returns (images
        seen, seconds spent on batches)."""
        c = self.config
        if self.start_batch == 0:  # (else: resuming inside an epoch whose state was restored)
            self.loss_sum, self.loss_n = 0.0, 0
            self.strategy.begin_epoch(self.net, epoch, self.train_features, self.log)
            if flag.stop:  # Ctrl-C while clustering: keep the state at the epoch's start
                self.save(epoch, 0)
                raise TrainingInterrupted(last_path(self.out), epoch, 0)
        batches = self.strategy.batches(epoch)
        self.n_batches = len(batches)
        seen, started, last_save = 0, time.monotonic(), time.monotonic()
        with progress_bar(total=len(batches), initial=self.start_batch, desc=f"epoch {epoch + 1}/{c.epochs}",
                          unit="batch", enabled=self.progress) as bar:
            for b in range(self.start_batch, len(batches)):
                seen += self.step(epoch, b, batches[b])
                bar.update(1)
                bar.set_postfix(loss=f"{self.loss_sum / self.loss_n:.4f}",
                                dev_eer="-" if self.best["eer"] is None else f"{self.best['eer']:.3f}")
                if flag.stop:
                    self.save(epoch, b + 1)
                    raise TrainingInterrupted(last_path(self.out), epoch, b + 1)
                if time.monotonic() - last_save > self.checkpoint_minutes * 60 and b + 1 < len(batches):
                    self.save(epoch, b + 1)
                    last_save = time.monotonic()
        self.start_batch = 0
        return seen, time.monotonic() - started

    def step(self, epoch: int, b: int, idx: list[int]) -> int:
        """Forward, backward and optimizer step of one batch; returns its size."""
        s = batch_seed(self.config.seed, epoch, b)
        torch.manual_seed(s)  # dropout
        x = to_device(self.augment(self.train_images[idx], self.config.input_size, torch.Generator().manual_seed(s)),
                      self.device)
        loss = self.strategy.loss(self.net, x, torch.as_tensor(idx))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.strategy.step()
        self.loss_sum, self.loss_n = self.loss_sum + loss.item(), self.loss_n + 1
        return len(idx)

    def train_features(self) -> np.ndarray:
        """Features of every training image at the training layer (DeepCluster clusters them)."""
        with vgg_layer(self.net, self.config.train_layer):
            return embed_tensor(self.net, self.train_images, self.config.input_size, self.device,
                                fn=lambda n, x: n.head(n.features(x)))

    def evaluate_dev(self, epoch: int) -> dict | None:
        """Dev EER of this epoch; keeps the checkpoint when it is the best so far."""
        with vgg_layer(self.net, self.config.layer):
            dev = None
            if len(self.dev_images):
                vectors = embed_tensor(self.net, self.dev_images, self.config.input_size, self.device)
                dev = dev_scores(vectors, [it.label for it in self.dev_items], self.config.seed)
            # no dev set (unlabelled data): the last epoch is the best we know
            improved = self.best["eer"] is None if dev is None else (self.best["eer"] is None
                                                                     or dev["eer"] < self.best["eer"])
            if improved:
                self.best.update(epoch=epoch + 1, **({"eer": dev["eer"], "threshold": dev["threshold"], "dev": dev}
                                                     if dev else {}))
                save_checkpoint(self.out, self.net, self.card(epoch + 1))
        return dev

    def end_epoch(self, epoch: int, dev: dict | None, seen: int, seconds: float, started: float) -> None:
        """The learning-curve line and the resume state at the epoch's end."""
        entry = {"epoch": epoch + 1, "loss": self.loss_sum / max(self.loss_n, 1), "batches": self.n_batches,
                 "dev_eer": dev and dev["eer"], "dev_threshold": dev and dev["threshold"],
                 "best_epoch": self.best["epoch"], "best_dev_eer": self.best["eer"],
                 "train_seconds": round(seconds, 2), "epoch_seconds": round(time.monotonic() - started, 2),
                 "images_per_s": round(seen / seconds, 2) if seen and seconds > 0 else None,
                 "lr": self.config.lr, "time": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
        if self.config.dc:
            entry["pseudo_classes"] = int(len(np.unique(self.strategy.pseudo.numpy())))
        with open(log_path(self.out), "a", encoding="utf-8") as f:
            f.write(json.dumps(plain(entry)) + "\n")
        self.loss_sum, self.loss_n = 0.0, 0
        self.save(epoch + 1, 0, finished=epoch + 1 == self.config.epochs)

    # ---- files

    def card(self, epochs_done: int) -> dict:
        c = self.config
        hyper = {k: v for k, v in c.to_dict().items() if k not in ("method", "arch", "init", "embed_dim",
                                                                   "input_size")}
        hyper.update(augment=self.augment.describe(), train_layer=c.train_layer)
        if c.dc:
            hyper["k_used"] = self.strategy.k_used
        card = {"name": self.out.stem, "arch": c.arch, "init": c.init, "embed_dim": c.embed_dim or None,
                "layer": c.layer, "input_size": c.input_size, "method": c.method, "hyper": hyper,
                "data": self.data_summary, "split": self.split, "trained": True, "command": self.command,
                "torch": str(torch.__version__),
                "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "epochs": epochs_done,
                "best_epoch": self.best["epoch"], "threshold": self.best["threshold"],
                "known_threshold": (self.best["dev"] or {}).get("threshold_far1"),
                "far_thresholds": (self.best["dev"] or {}).get("far_thresholds"),
                "metrics": {"dev": self.best["dev"]}}
        if self.parent_card:
            card["parent"] = {"name": self.parent_card.get("name"), "method": self.parent_card.get("method"),
                              "path": c.init}
        return plain(card)

    def save(self, epoch: int, batch: int, finished: bool = False) -> None:
        """The resume state at (epoch, batch), written atomically."""
        resume_state = {"config": self.config.to_dict(), "split": self.split, "epoch": epoch, "batch": batch,
                        "optimizer": self.optimizer.state_dict(), "strategy": self.strategy.state(),
                        "best": self.best, "loss_sum": self.loss_sum, "loss_n": self.loss_n, "finished": finished}
        weights = {key: value.detach().cpu() for key, value in self.net.state_dict().items()}
        path = last_path(self.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"format": FORMAT, "card": self.card(epoch), "state_dict": weights, "resume": resume_state}, tmp)
        os.replace(tmp, path)

    def finish(self) -> dict:
        """The best epoch, scored on the test characters; its card gets the scores."""
        c = self.config
        if not self.out.exists():  # resumed a finished run with no more epochs and no best file
            with vgg_layer(self.net, c.layer):
                save_checkpoint(self.out, self.net, self.card(self.start_epoch))
        _, best_state = read_checkpoint(self.out)
        self.net.load_state_dict(best_state)
        card = self.card(max(self.start_epoch, c.epochs))
        with vgg_layer(self.net, c.layer):
            card["metrics"]["test"] = score_test_set(self.net, self.test_images, [it.label for it in self.test_items],
                                                     c.input_size, self.device, c.seed, self.best["threshold"])
            save_checkpoint(self.out, self.net, card)
        if card["metrics"]["test"]:
            t = card["metrics"]["test"]
            self.log(f"test: EER {t['eer']:.3f}" + (f", AMI {t['clustering']['ami']:.3f}" if t.get("clustering") else "")
                     + f" ({t['characters']} unseen characters, {t['images']} images)")
        else:
            characters = len({it.label for it in self.test_items})
            self.log(f"test: not scored ({characters} test character{'' if characters == 1 else 's'}; "
                     "scoring needs 2 with 2 or more pictures each)")
        self.log(f"model written to {self.out} (card {self.out.with_suffix('.json')}; resume state "
                 f"{last_path(self.out)}); use it: illusort sort DIR --model {self.out}")
        return card


def train(dirs, config: TrainConfig | None = None, out=None, **run) -> dict:
    """Train a model on labelled folders (`DIR/<character>/<images>`; DeepCluster also takes
    flat unlabelled folders) and write `out` with its model card. Returns the card.
    `run`: the `Trainer`'s options (resume, overwrite, device, workers, dev_dirs, ...)."""
    return Trainer(dirs, config or TrainConfig(), out, **run).train()


def _data_summary(collection, dirs, dev_dirs, train_items, dev_items, test_items, skipped) -> dict:
    def chars(items):
        return len({it.label for it in items if it.label is not None})

    return {
        "folders": [str(d) for d in dirs], "dev_folders": [str(d) for d in dev_dirs],
        "characters": {"train": chars(train_items), "dev": chars(dev_items), "test": chars(test_items)},
        "images": {"train": len(train_items), "dev": len(dev_items), "test": len(test_items)},
        "unlabelled_images": sum(it.label is None for it in train_items),
        "skipped": skipped,
    }
