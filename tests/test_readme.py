"""Every shell command block of the README, run as written on a small synthetic folder in a
temporary HOME, so the README cannot drift from the CLI.

`illusort` commands run in-process (one torch import for all of them); the install and test
lines (`python3 -m venv`, `pip`, `pytest`, `ruff`) are skipped; `train` and `review` lines (a server
that runs until Ctrl-C, driven by tests/test_review.py) and the `evaluate`
lines that need a trained model or ImageNet weights are parsed by the CLI (every option and
value checked) but not run: a training run takes minutes. The Python block runs too. The names the README uses exist
after its `sort` (the fixture draws `ram-1.png`, `logo.png`, `rem1.png`, ...); where the
clustering of the day puts a picture elsewhere than the README says, it is first moved there
with `illusort move`, as a user would, and `accept`/`reject` answer the numbers its queue shows.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import draw_character, make_collection

README = Path(__file__).resolve().parent.parent / "README.md"
SKIPPED = {"python3", ".", "pip", "pytest", "ruff"}  # installing, testing and linting illusort itself
PARSED_ONLY = {"train", "review"}  # review serves until Ctrl-C: tests/test_review.py runs it
RUN_EVALUATE = {"--json"}  # the evaluate line that runs for real: the shipped model on ~/labelled


def shell_blocks(text: str) -> list[list[str]]:
    """The lines of each ```sh block, continuation lines joined."""
    blocks = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        blocks.append([line for line in block.replace("\\\n", " ").splitlines() if line.strip()])
    return blocks


def commands(line: str) -> list[list[str]]:
    """`a && b` -> [[a...], [b...]], comments dropped."""
    words = shlex.split(line, comments=True)
    parts, current = [], []
    for word in words:
        if word == "&&":
            parts.append(current)
            current = []
        else:
            current.append(word)
    return [p for p in parts + [current] if p]


@pytest.fixture
def readme_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    fanart = home / "Pictures" / "fanart"
    make_collection(fanart, characters=3, per_character=4)
    draw_character(1, 50).save(fanart / "ram-1.png")
    draw_character(0, 51).save(fanart / "rem-3.png")
    Image.new("RGB", (90, 60), (20, 20, 20)).save(fanart / "logo.png")  # like no character at all
    for c in range(3):
        for k in range(3):
            (home / "labelled" / f"char{c}").mkdir(parents=True, exist_ok=True)
            draw_character(c, 200 + k).save(home / "labelled" / f"char{c}" / f"{k}.png")
    work = tmp_path / "work"
    work.mkdir()
    draw_character(0, 300).save(work / "rem1.png")
    draw_character(0, 301).save(work / "rem2.png")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    return home


def invoke(args, env=None):
    from click.testing import CliRunner

    from illusort.cli import main

    return CliRunner().invoke(main, args, catch_exceptions=False, env=env, prog_name="illusort")


def parse_only(args) -> None:
    """Let click check the command line (command, options, values) without running it."""
    import click

    from illusort.cli import main

    with click.Context(main, info_name="illusort") as ctx:
        command = main.get_command(ctx, args[0])
        assert command is not None, f"README names an unknown command: {args[0]}"
        command.make_context(args[0], list(args[1:]), parent=ctx)


def place(out: Path, wanted: str) -> None:
    """Make OUT/wanted (FOLDER/FILE) exist: move FILE there from wherever the sort put it."""
    if (out / wanted).exists() or (out / wanted).is_symlink():
        return
    folder, name = wanted.split("/", 1)
    found = [p for p in out.glob(f"*/{name}")]
    assert found, f"README names {wanted}, but the sort placed no {name} in {out}"
    assert folder not in ("unsorted", "not-a-character"), \
        f"README names {wanted}, but this model sorted it into {found[0].parent.name}"
    result = invoke(["move", str(out), found[0].relative_to(out).as_posix(), "--to", folder])
    assert result.exit_code == 0, result.output


def queued(out: Path, numbers: list[str]) -> list[str]:
    """The README's suggestion numbers that this sort's queue holds (a user answers what is shown)."""
    import json

    shown = len(json.loads(invoke(["status", str(out), "--json"]).output)["fixes"])
    return [n for n in numbers if int(n) <= shown]


def run_line(line: str, home: Path, mode: str | None = None) -> bool:
    """Run one README line as written (`mode`: given to every `sort`); False when skipped."""
    if "download more pictures" in line:
        draw_character(2, 77).save(home / "Pictures" / "fanart" / "new-1.png")
        draw_character(0, 78).save(home / "Pictures" / "fanart" / "new-2.png")
    completion = re.fullmatch(r'eval "\$\((_ILLUSORT_COMPLETE)=(\w+) illusort\)"', line.strip())
    if completion:
        result = invoke([], env={completion.group(1): completion.group(2)})
        assert result.exit_code == 0 and "complete" in result.output.lower(), result.output
        return True
    ran = False
    for words in commands(line):
        if words[0] in SKIPPED:
            continue
        assert words[0] == "illusort", f"README runs something other than illusort: {line}"
        args = [os.path.expanduser(w) if w.startswith("~") else w for w in words[1:]]
        if args[0] in PARSED_ONLY or (args[0] == "evaluate" and not RUN_EVALUATE & set(args)):
            parse_only(args)
            ran = True
            continue
        if args[0] == "move":
            out = Path(args[1])
            for wanted in [a for a in args[2:] if "/" in a and not a.startswith("-")]:
                place(out, wanted)
        if args[0] in ("accept", "reject") and "--all-above" not in args:
            args = [*args[:2], *queued(Path(args[1]), args[2:])]
            if len(args) == 2:  # the model of the day suggests nothing here: the line is only parsed
                parse_only([*args, "1"])
                ran = True
                continue
        if args[0] == "sort" and mode:
            args += ["--mode", mode]
        result = invoke(args)
        assert result.exit_code == 0, f"README line failed: {line}\n{result.output}"
        ran = True
    return ran


@pytest.mark.slow
def test_every_readme_command_runs(readme_home):
    ran = [line for block in shell_blocks(README.read_text()) for line in block if run_line(line, readme_home)]
    assert len(ran) >= 25, ran
    for code in re.findall(r"```python\n(.*?)```", README.read_text(), re.S):  # "Use from Python"
        shutil.copytree(readme_home / "labelled", Path.cwd() / "pics")
        exec(compile(code, "README.md", "exec"), {})
    out = readme_home / "Pictures" / "by-character"
    # the last block sorted into by-character again: the README's corrections were remembered
    assert (out / "Ram" / "ram-1.png").is_symlink() and (out / "Rem").is_dir()
    assert not (out / "unsorted" / "logo.png").exists()


def pictures(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*") if p.is_file() and ".illusort" not in p.parts}


@pytest.mark.slow
def test_the_workflow_runs_in_move_mode_too(readme_home):
    """The README's workflow ("From a first sort to named, corrected folders") with
    `--mode move`: the re-run still knows the characters the first sort moved away (new
    pictures join their folders), and undo brings every picture back."""
    (block,) = [b for b in shell_blocks(README.read_text()) if any("# 1. sort" in line for line in b)]
    fanart, out = readme_home / "Pictures" / "fanart", readme_home / "Pictures" / "by-character"
    *steps, undo = block
    assert "illusort undo" in undo
    originals = pictures(fanart)
    for line in steps:
        run_line(line, readme_home, mode="move")
        if "download more pictures" in line:
            originals.update(pictures(fanart))
    assert not pictures(fanart)  # all moved, the new ones too
    assert (out / "Ram" / "ram-1.png").is_file() and not (out / "Ram" / "ram-1.png").is_symlink()
    for new, kind in (("new-1.png", 2), ("new-2.png", 0)):
        (placed,) = out.glob(f"*/{new}")
        homes = {p.parent.name for p in out.glob(f"*/c{kind}_*")}  # where the first sort put its character
        assert placed.parent.name in homes, (new, homes)
    run_line(undo, readme_home, mode="move")
    assert pictures(fanart) == originals
