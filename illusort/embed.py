"""Embedding a folder into the index: find files, skip unchanged ones, decode in worker
processes while the network runs, write each batch as it comes."""
from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .faces import DECODE_SIDE, DETECT_SIDE, crop, face_boxes
from . import fastpaths
from .images import (BadImage, Unreadable, decode, file_digest, file_kind, find_images, letterbox, open_image,
                     read_regular_file, reduced)
from .index import Index, Row
from .layout import META_SKIPS_REPORTED
from .progress import progress_bar
from .weights import LoadedModel


def preprocess(image: Image.Image, size: int) -> torch.Tensor:
    """Letterbox to a square on white (nothing of the character is cropped away), resize,
    and return a uint8 tensor of shape (3, size, size) (a quarter of the bytes of float32 to
    pass from a decoding process; `as_input` makes the network's input)."""
    array = np.asarray(letterbox(image, size), dtype=np.uint8).copy()
    return torch.from_numpy(array).permute(2, 0, 1)


def as_input(batch: torch.Tensor, device: str) -> torch.Tensor:
    """uint8 images (n, 3, h, w) -> float in [0, 1] on `device` (channels-last on the CPU)."""
    x = batch.to(device).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last) if device == "cpu" else x


class ImageFiles(Dataset):
    """Reads and decodes one file per item, in a worker process: (i, digest, crops, error),
    crops = [(box, tensor)] (box None = whole image), error = (reason, transient) for a file that
    could not be used. Use with `collate=as_list`."""

    def __init__(self, root: Path, paths: list[str], size: int, faces: str = "off"):
        self.root, self.paths, self.size, self.faces = root, paths, size, faces

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        try:
            digest, face_crops = load_crops(self.root / self.paths[i], self.size, self.faces)
        except Unreadable as error:
            return i, None, None, (str(error), True)
        except BadImage as error:
            return i, None, None, (str(error), False)
        return i, digest, face_crops, None


def load_crops(path: Path, size: int, faces: str = "off") -> tuple[str, list[tuple[list | None, torch.Tensor]]]:
    """Read one file: its content hash and what is embedded of it (`crops`), decoding no
    more pixels than needed. Faces off: JPEG drafted / other formats reduced to twice the
    network's input. Faces on: detection looks at a reduced decoding (DETECT_SIDE); only a
    picture whose faces are cropped is decoded again at DECODE_SIDE, so small faces crop
    sharp. Boxes are in pixels of the picture itself."""
    data = read_regular_file(path)
    digest = file_digest(data)
    if faces == "off":
        return digest, [(None, preprocess(open_image(data, max_side=size * 2), size))]
    if not fastpaths.enabled("draft"):
        return digest, crops(open_image(data, max_side=DECODE_SIDE), size, faces)
    image, full = decode(data, max_side=max(DETECT_SIDE, 2 * size), reduce=False)
    boxes = face_boxes(image, faces, full)
    if boxes == [None]:
        return digest, [(None, preprocess(reduced(image, 2 * size), size))]
    if image.size != full:  # drafted: crop from a sharper decoding
        image = decode(data, max_side=DECODE_SIDE, reduce=False)[0]
    sx, sy = image.width / full[0], image.height / full[1]
    return digest, [(list(box), preprocess(image.crop((round(box[0] * sx), round(box[1] * sy), round(box[2] * sx),
                                                       round(box[3] * sy))), size)) for box in boxes]


def crops(image: Image.Image, size: int, faces: str = "off") -> list[tuple[list | None, torch.Tensor]]:
    """What is embedded of one image: each face crop (largest first), or the whole image."""
    return [(list(box) if box else None, preprocess(crop(image, box), size)) for box in face_boxes(image, faces)]


def as_list(items):
    """DataLoader collate that keeps items as they are (bad files have no tensor to stack)."""
    return items


@dataclass
class EmbedSummary:
    files: int = 0
    embedded: int = 0
    reused: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list = field(default_factory=list)  # (path, reason)
    new_skips: list = field(default_factory=list)  # those not reported by an earlier run (`reported_skips`)

    @property
    def changed(self) -> bool:
        """Whether this run changed the index or found a new unreadable file: worth a line."""
        return bool(self.embedded or self.reused or self.removed or self.new_skips)

    def line(self) -> str:
        return (f"{self.files} images: {self.embedded} embedded, {self.reused} reused by content, "
                f"{self.unchanged} unchanged, {self.removed} removed from index, {len(self.skipped)} skipped")


def stat_key(path: Path) -> tuple[int, int]:
    """(size, mtime_ns) of a regular file; `BadImage` for a FIFO, socket or device named like
    an image (opening a FIFO to read it would wait forever for a writer)."""
    st = path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise BadImage(f"not a regular file ({file_kind(st.st_mode)})")
    return st.st_size, st.st_mtime_ns


def embed_folder(root: Path, model: LoadedModel, index: Index, *, batch_size: int = 32, workers: int = 2,
                 progress: bool = True, exclude: Path | None = None, runner=None,
                 links: str = "inside", keep=frozenset()) -> EmbedSummary:
    """Bring the index of `root` up to date for `model`. Safe to interrupt and run again.

    `links`: which symbolic links are followed (`images.find_images`).
    `keep`: paths gone from `root` whose rows stay (files a move-mode sort took into OUT).
    `runner(root, todo, model, index, batch_size, workers)` yields batches of per-file results
    (i into todo, digest, error, faces) where error = (reason, transient) and faces = [(box,
    vector)], or None to reuse the indexed rows of the same content: `local_results` here,
    `illusort.distributed.ray_results` on a Ray cluster. Results are written as they come."""
    root = Path(root)
    summary = EmbedSummary()
    unreadable = []  # (path, reason); links not followed (see `find_images`) first
    paths = [p.as_posix() for p in find_images(root, exclude, links, unreadable)]
    summary.files = len(paths)
    known = index.file_stats(model.model_id)
    reported = reported_skips(index, model.model_id)

    todo, stats = [], {}
    for rel in paths:
        try:
            stats[rel] = stat_key(root / rel)
        except OSError as error:
            broken = os.path.islink(root / rel)
            unreadable.append((rel, f"{'broken symbolic link' if broken else 'cannot stat'}: "
                                    f"{error.strerror or error}"))
            continue
        except BadImage as error:
            unreadable.append((rel, str(error)))
            continue
        old = known.get(rel)
        if old and old[:2] == stats[rel]:
            summary.unchanged += 1
        else:
            todo.append(rel)
    index.remove(model.model_id, [rel for rel, _ in unreadable])  # no stale vector for a file now unusable
    bar = progress_bar(total=len(todo), desc="embedding", unit="img", enabled=progress and bool(todo))
    for results in (runner or local_results)(root, todo, model, index, batch_size, workers):
        for i, digest, error, faces in results:
            rel = todo[i]
            if error is not None and error[1]:  # unreadable now: not recorded, so retried next run
                index.remove(model.model_id, [rel])
                unreadable.append((rel, error[0]))
            elif error is not None:  # bad content: recorded, not retried until the file changes
                index.put(model.model_id, rel, *stats[rel], None, [Row(rel, 0, None, None, error[0])])
            elif faces is None:  # same content as a file already indexed (touched or renamed)
                index.put(model.model_id, rel, *stats[rel], digest,
                          [Row(rel, r.face, r.box, r.vector, r.error)
                           for r in index.rows_by_digest(model.model_id, digest)])
                summary.reused += 1
            else:
                index.put(model.model_id, rel, *stats[rel], digest,
                          [Row(rel, face, box, vector) for face, (box, vector) in enumerate(faces)])
                summary.embedded += 1
        index.commit()
        bar.update(len(results))
    bar.close()
    vanished = set(known) - set(paths) - set(keep)  # dropped last, so a renamed file could reuse its rows
    index.remove(model.model_id, vanished)
    index.commit()
    summary.removed = len(vanished)
    # this run's unreadable files and this and earlier runs' bad content
    summary.skipped = sorted(unreadable + index.errors(model.model_id))
    summary.new_skips = [(path, reason) for path, reason in summary.skipped if (path, reason) not in reported]
    index.set_meta(f"{META_SKIPS_REPORTED} {model.model_id}", unreadable)
    index.commit()
    return summary




def reported_skips(index: Index, model_id: str) -> set[tuple[str, str]]:
    """Files an earlier run already said it skipped: bad content recorded in the index (not
    retried until the file changes) and the last run's unreadable files (retried each run).
    Each is said once, not on every later command; `illusort status` lists them all."""
    last = index.get_meta(f"{META_SKIPS_REPORTED} {model_id}") or []
    return set(index.errors(model_id)) | {tuple(item) for item in last}


def local_results(root: Path, todo: list[str], model: LoadedModel, index: Index, batch_size: int, workers: int):
    """Decode (in `workers` processes, or in line when 0) and run the network here; content
    already in the index (a touched or renamed file) is not embedded again."""
    loader = DataLoader(ImageFiles(root, todo, model.input_size, model.faces), batch_size=batch_size,
                        num_workers=workers if len(todo) > batch_size else 0, collate_fn=as_list,
                        persistent_workers=False)
    keep_freed_memory()
    if model.device == "cpu":
        model.net.to(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    if model.device == "cpu" and loader.num_workers and fastpaths.enabled("workers"):
        # Decoding processes take cores of their own: a forward whose threads wait for cores
        # held by them stalls at every parallel step (2 cores, 2 processes: forward 3x slower).
        torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - loader.num_workers)))
    try:
        yield from _embed_batches(loader, model, index)
    finally:
        torch.set_num_threads(threads)


def _embed_batches(loader, model: LoadedModel, index: Index):
    for batch in loader:
        results, fresh = [], []
        indexed = index.known_digests(model.model_id, [digest for _, digest, _, _ in batch if digest])
        for i, digest, face_crops, error in batch:
            if error is not None:
                results.append((i, None, error, None))
            elif digest in indexed:
                results.append((i, digest, None, None))
            else:
                fresh.append((i, digest, face_crops))
        if fresh:
            x = as_input(torch.stack([t for *_, face_crops in fresh for _, t in face_crops]), model.device)
            vectors = iter(model.forward(x))
            results += [(i, digest, None, [(box, next(vectors)) for box, _ in face_crops])
                        for i, digest, face_crops in fresh]
        yield results


def embed_images(model: LoadedModel, images: list[Image.Image], batch_size: int = 32) -> np.ndarray:
    """Embed PIL images held in memory (query and known-character references): one vector
    per image, of its largest face when the model embeds faces."""
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.stack([crops(im, model.input_size, model.faces)[0][1] for im in images[start:start + batch_size]])
        out.append(model.forward(as_input(x, model.device)))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of returning each large block to the OS.

    By default every activation/gradient buffer above the mmap threshold is unmapped when freed
    and page-faulted (zeroed by the kernel) again next batch: system time was as large as the
    compute. Measured at 128 px on 2 cores: training ResNet18 60 -> 87 img/s,
    EfficientNet-Lite0 30 -> 70 img/s; embedding Lite0 181 -> 409 img/s. Best effort: a no-op off glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 2**31 - 1)  # M_MMAP_THRESHOLD: big blocks from the heap, reusable
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: do not shrink the heap after each batch
    except (OSError, AttributeError):
        pass


def default_workers(faces: str = "off") -> int:
    """Decoding processes beside the network. With two cores or fewer and whole images, none:
    the forward pass already uses every core, and passing images between processes cost more
    than decoding them in line (measured: benchmarks/PERFORMANCE.md). Face detection is
    single-threaded and costs far more than the forward, so with faces two processes keep
    both cores busy instead of one (measured: bench_sort.py)."""
    cores = os.cpu_count() or 1
    if cores <= 2:
        return 2 if faces != "off" and cores == 2 and fastpaths.enabled("workers") else 0
    return min(4, cores - 1)
