"""Shared fixtures: small synthetic 'characters' (coloured figures with a distinct hair and
eye colour each), drawn here so tests need no network and no copyrighted data."""
from __future__ import annotations

import colorsys
import os
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw



def hsv(h, s=0.62, v=0.86):
    """RGB of a colour in the middle of an hsv-hist bin (so small jitter never changes bins)."""
    return tuple(round(c * 255) for c in colorsys.hsv_to_rgb(h / 360, s, v))


# Distinct hair/eye colours: hsv-hist separates them, so clustering tests have a known truth.
PALETTE = [(hsv(15), hsv(225)), (hsv(135), hsv(315)), (hsv(255), hsv(45)),
           (hsv(75), hsv(195)), (hsv(285), hsv(105)), (hsv(345), hsv(165))]
SKIN, BACKGROUND = hsv(25, 0.12, 0.95), hsv(40, 0.03, 0.96)


def draw_character(kind: int, seed: int, size=(72, 96), colours=None) -> Image.Image:
    """A picture of character `kind` (its PALETTE colours, or `colours` = (hair, eyes))."""
    rng = random.Random(seed * 1000 + kind)
    hair, eyes = colours or PALETTE[kind % len(PALETTE)]

    def jitter(colour):
        return tuple(max(0, min(255, c + rng.randint(-5, 5))) for c in colour)

    w, h = size
    image = Image.new("RGB", size, jitter(BACKGROUND))
    draw = ImageDraw.Draw(image)
    dx, dy = rng.randint(-6, 6), rng.randint(-6, 6)
    draw.ellipse([w * 0.1 + dx, h * 0.05 + dy, w * 0.9 + dx, h * 0.75 + dy], fill=jitter(hair))
    draw.ellipse([w * 0.25 + dx, h * 0.25 + dy, w * 0.75 + dx, h * 0.7 + dy], fill=jitter(SKIN))
    for ex in (0.35, 0.6):
        draw.ellipse([w * ex + dx, h * 0.4 + dy, w * (ex + 0.08) + dx, h * 0.48 + dy], fill=jitter(eyes))
    return image


def draw_scene(kinds: list[int], seed: int, size=(320, 240), face=100) -> Image.Image:
    """An 'illustration' with a small anime face (`illusort.faces.draw_face`) of each
    character in `kinds`, side by side on a plain background."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, BACKGROUND)
    slot = size[0] // len(kinds)
    for n, kind in enumerate(kinds):
        from illusort.faces import draw_face

        hair, eyes = PALETTE[kind % len(PALETTE)]
        x = n * slot + rng.randint(0, max(0, slot - face))
        image.paste(draw_face(face, hair=hair, iris=eyes, background=BACKGROUND), (x, rng.randint(0, size[1] - face)))
    return image


def make_collection(root: Path, characters: int = 4, per_character: int = 10, nested: bool = True) -> dict[str, int]:
    """A flat-ish folder of illustrations (sub-folders like a real download tree).
    Returns {relative path: true character}."""
    truth = {}
    for c in range(characters):
        for k in range(per_character):
            folder = root / (f"batch{k % 3}" if nested else "")
            folder.mkdir(parents=True, exist_ok=True)
            name = f"c{c}_{k}.png" if k % 2 else f"c{c}_{k}.jpg"
            draw_character(c, k).save(folder / name)
            truth[(folder / name).relative_to(root).as_posix()] = c
    return truth


def make_labelled(root: Path, characters: int = 3, per_character: int = 4) -> Path:
    """A labelled folder, ROOT/c<kind>/<k>.png, as `evaluate`, `train` and the benchmarks read."""
    for kind in range(characters):
        (root / f"c{kind}").mkdir(parents=True)
        for k in range(per_character):
            draw_character(kind, k).save(root / f"c{kind}" / f"{k}.png")
    return root


@pytest.fixture
def collection(tmp_path):
    root = tmp_path / "pics"
    truth = make_collection(root)
    return root, truth


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Indexes of read-only folders go to a cache under HOME: keep tests out of the real one."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("NUMBA_CACHE_DIR", os.environ.get("NUMBA_CACHE_DIR", str(Path.home() / ".cache/illusort-numba")))


@pytest.fixture
def sorted_out(tmp_path):
    """A small folder sorted with hsv-hist: (folder, OUT)."""
    root = tmp_path / "pics"
    make_collection(root, characters=3, per_character=8)
    Image.new("RGB", (60, 60), (10, 10, 10)).save(root / "logo.png")  # fits no character: unsorted
    out = tmp_path / "out"
    run_cli("sort", root, "--out", out, "--model", "hsv-hist", "-q", "--workers", "0", "--seed", "0")
    return root, out


def one_line_error(result, *needles):
    """The CLI refused with exit 1 and one `Error:` line holding each of `needles`; returns it."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def run_cli(*args, ok=True):
    """Invoke the CLI in-process; assert the exit code."""
    from click.testing import CliRunner

    from illusort.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok is not None:
        assert (result.exit_code == 0) == ok, result.output
    return result


@pytest.fixture(scope="session")
def tiny_cnn(tmp_path_factory):
    """A small randomly initialised ResNet18 checkpoint (input 32 px): exercises the CNN path fast."""
    import torch

    from illusort import nets
    from illusort.weights import save_checkpoint

    torch.manual_seed(0)
    net = nets.build("resnet18", embed_dim=64, input_size=32)
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    save_checkpoint(path, net, {"arch": "resnet18", "embed_dim": 64, "input_size": 32, "threshold": 0.5})
    return path


@pytest.fixture
def tmpfs(tmp_path):
    """Mount small tmpfs file systems (a second file system; a disk that fills up):
    `tmpfs(name, size)` -> the mount point. Skips where mounting is not permitted."""
    import subprocess

    mounts = []

    def mount(name: str = "tmpfs", size: str = "200k", skip: bool = True) -> Path | None:
        """skip=False: return None instead of skipping when mounting is not permitted."""
        path = tmp_path / name
        path.mkdir()
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                  capture_output=True, text=True)
            why = done.stderr.strip() or "mount failed" if done.returncode else None
        except OSError as error:
            why = str(error)
        if why:
            if not skip:
                return None
            pytest.skip(f"cannot mount a tmpfs here ({why})")
        mounts.append(path)
        return path

    yield mount
    for path in reversed(mounts):
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def index_key(model="hsv-hist", faces="auto") -> str:
    """The index key of a model as the CLI embeds with it by default (face crops `auto`,
    precision `auto`: bfloat16 rows on a CPU with bf16 units)."""
    from illusort.weights import load_model, with_faces, with_precision

    return with_precision(with_faces(load_model(str(model)), faces), "auto").model_id
