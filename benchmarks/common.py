"""What the accuracy benchmarks share: where the labelled data is, a model card's split, and
embedding one part of it (copied into a temporary flat folder, so ../shared stays untouched
and the model sees only pixels, not folder names). The data is copyrighted: copies are
deleted afterwards, and only vectors are ever kept."""
from __future__ import annotations

import json
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
FAN_ART = ("holoen-faces", "safebooru-newgame-lovelive", "dafre-danbooru-faces")


def load_split(card_path) -> dict[str, list[str]]:
    """The train/dev/test character lists stored in a model card (or a JSON holding `split`)."""
    card = json.loads(Path(card_path).with_suffix(".json").read_text(encoding="utf-8"))
    split = card["split"]
    return split if isinstance(split, dict) else json.loads(split.replace("'", '"'))


def flat_copy(data: Path, characters: set[str], work: Path) -> dict[str, str]:
    """Copy the chosen characters' images into work/ under neutral shuffled names; {name: label}."""
    from illusort.evaluate import labelled_images

    items = [(rel, label) for rel, label in labelled_images(data, depth=2) if label in characters]
    random.Random(0).shuffle(items)
    truth = {}
    for k, (rel, label) in enumerate(items):
        name = f"{k:05d}{Path(rel).suffix.lower()}"
        shutil.copyfile(data / rel, work / name)
        truth[name] = label
    return truth


def part_vectors(model_spec: str | None, characters: set[str], data: Path = DATA, faces: str = "auto"):
    """(model, vectors, labels): one vector per picture (its first face row, as `sort` places
    it) for the given characters' images."""
    from illusort.workflow import Settings, embed

    work = Path(tempfile.mkdtemp(prefix="illusort-bench-"))
    try:
        flat = work / "pictures"
        flat.mkdir()
        truth = flat_copy(data, characters, flat)
        model, index, _ = embed(flat, Settings(model=model_spec, progress=False, faces=faces, index=work / "i.db"))
        with index:
            rows, vectors = index.embeddings(model.model_id)
        keep = [k for k, r in enumerate(rows) if r.face == 0]
        return model, np.asarray(vectors[keep]), [truth[Path(rows[k].path).name] for k in keep]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"
