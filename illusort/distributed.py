"""Embedding on a Ray cluster (`pip install illusort[ray]`; `illusort embed DIR --ray [ADDRESS]`).

The driver plans as for a local run (only new or changed files) and writes the index; Ray
Data reads, decodes and embeds the file list on actors that each hold the model, and streams
one row per face back, so the index fills as results arrive and an interrupted run resumes.
Every node must see DIR at the same path (a shared file system) and have illusort installed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .index import Index
from .weights import LoadedModel


class _Embedder:
    """A Ray actor: the model, loaded once, embedding batches of files (one row per face)."""

    def __init__(self, model_spec: str | None, layer: str | None, faces: str, precision: str, model_id: str):
        import torch

        from .weights import load_model, with_faces, with_precision

        torch.set_num_threads(1)  # one actor per CPU
        self.model = with_precision(with_faces(load_model(model_spec, layer, "cpu", quiet=True), faces), precision)
        if self.model.model_id != model_id:  # another file under the same name on this node
            raise RuntimeError(f"this node loads {self.model.model_id}, the driver {model_id}")
        size = self.model.input_size
        self.dim = self.model.forward(torch.zeros(1, 3, size, size)).shape[1]

    def __call__(self, batch: dict) -> dict:
        import torch

        from .embed import ImageFiles, as_input

        files = ImageFiles(Path(str(batch["root"][0])), [str(p) for p in batch["path"]], self.model.input_size,
                           self.model.faces)
        out = {"i": [], "digest": [], "error": [], "transient": [], "face": [], "faces": [], "box": [], "vector": []}
        crops, owners = [], []
        for k, i in enumerate(batch["i"]):
            _, digest, face_crops, error = files[k]
            if error is not None:
                owners.append((int(i), "", error[0], error[1], -1, 0, None))
                continue
            for face, (box, tensor) in enumerate(face_crops):
                owners.append((int(i), digest, "", False, face, len(face_crops), box))
                crops.append(tensor)
        vectors = iter(np.zeros((0, self.dim), np.float32))
        if crops:
            vectors = iter(self.model.forward(as_input(torch.stack(crops), "cpu")))
        for i, digest, error, transient, face, n_faces, box in owners:
            for key, value in zip(out, (i, digest, error, transient, face, n_faces, json.dumps(box),
                                        next(vectors) if face >= 0 else np.zeros(self.dim, np.float32))):
                out[key].append(value)
        return {key: np.stack(values) if key == "vector" else np.asarray(values) for key, values in out.items()}


def ray_runner(address: str | None = None, actors: int | None = None, model_spec: str | None = None):
    """A `runner` for `embed.embed_folder` that embeds on Ray (started locally when `address`
    is None, else joined: 'auto' or 'ray://host:10001')."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("embedding on Ray needs the ray extra: pip install 'illusort[ray]'") from None

    def run(root: Path, todo: list[str], model: LoadedModel, index: Index, batch_size: int, workers: int):
        if not todo:
            return
        if not ray.is_initialized():
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
                     include_dashboard=False, **({} if address else {"num_cpus": actors}))
        items = [{"i": i, "path": rel, "root": str(Path(root).resolve())} for i, rel in enumerate(todo)]
        pool = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        dataset = ray.data.from_items(items).map_batches(
            _Embedder, fn_constructor_args=(model_spec, model.card.get("layer"), model.faces, model.precision, model.model_id),
            batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=pool), num_cpus=1)
        pending: dict[int, dict] = {}  # a file's faces may arrive in different batches
        for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
            results = []
            for k, i in enumerate(batch["i"].tolist()):
                if batch["error"][k]:
                    results.append((i, None, (str(batch["error"][k]), bool(batch["transient"][k])), None))
                    continue
                faces = pending.setdefault(i, {})
                faces[int(batch["face"][k])] = (json.loads(str(batch["box"][k])), batch["vector"][k])
                if len(faces) == int(batch["faces"][k]):
                    results.append((i, str(batch["digest"][k]), None, [faces[f] for f in sorted(pending.pop(i))]))
            yield results

    return run
