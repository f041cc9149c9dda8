"""The command line is declared once (`illusort/cli/definition.py`): every choice is the
library's constant, every flag has one declaration in the package, and the exit codes are one
enum that --help, the README and the error handler agree on."""
import ast
import errno
import re
from collections import Counter
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from illusort import registry
from illusort.cli import main
from illusort.cli.definition import cluster_options, cluster_options_from, library_options
from illusort.cli.exit_status import ExitStatus, exit_if_strict
from illusort.cli.group import IllusortGroup
from illusort.cluster import ALGORITHMS, ClusterError, ClusterOptions
from illusort.errors import InputError
from illusort.evaluate import SELECTIONS
from illusort.faces import FACE_MODES
from illusort.manifest import MODES

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "illusort" / "cli"
# Each option with choices, and the library constant its choices are.
LIBRARY_CHOICES = {"faces": FACE_MODES, "device": registry.DEVICES, "precision": registry.PRECISIONS,
                   "algorithm": ALGORITHMS, "mode": MODES, "characters": SELECTIONS, "method": registry.TRAIN_METHODS,
                   "loss": registry.LOSSES, "optimizer": registry.OPTIMIZERS, "arch": tuple(registry.BACKBONES)}


def calls_to(name: str):
    """(file, call) of every `click.NAME(...)` in the cli package's source."""
    for path in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "click"):
                yield path.name, node


def test_every_choice_is_the_library_constant():
    seen = set()
    for command in main.commands.values():
        for param in command.params:
            if isinstance(param.type, click.Choice):
                assert param.name in LIBRARY_CHOICES, f"{command.name} --{param.name}: which library constant?"
                assert tuple(param.type.choices) == tuple(LIBRARY_CHOICES[param.name]), (command.name, param.name)
                seen.add(param.name)
    assert seen == set(LIBRARY_CHOICES)
    literals = [f"{file}:{call.lineno}" for file, call in calls_to("Choice")
                if call.args and isinstance(call.args[0], (ast.List, ast.Tuple, ast.Set))]
    assert not literals, f"hard-coded choices (use the library's constant): {literals}"


def test_each_flag_is_declared_once_in_the_package():
    """One `click.option` per long flag (a short one, such as -o, may stand for different options)."""
    flags = Counter()
    for _, call in calls_to("option"):
        for arg in call.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("--"):
                flags.update(arg.value.split("/"))
    assert flags["--faces"] == 1 and flags["--model"] == 1
    assert [flag for flag, n in flags.items() if n > 1] == []


def test_no_command_repeats_an_option():
    for command in main.commands.values():
        opts = [opt for param in command.params for opt in param.opts + param.secondary_opts]
        assert len(opts) == len(set(opts)), command.name


def test_clustering_options_are_one_checked_object():
    seen = []

    @click.command()
    @cluster_options
    def probe(**kwargs):
        seen.append(cluster_options_from(kwargs))
        assert not kwargs  # every clustering option was taken

    assert CliRunner().invoke(probe, []).exit_code == 0
    assert seen[-1] == ClusterOptions()  # the command line's defaults are the library's
    CliRunner().invoke(probe, ["--paper-selection", "--strictness", "0.9", "--algorithm", "hdbscan", "--seed", "3"])
    assert seen[-1] == ClusterOptions(strictness=None, algorithm="hdbscan", seed=3)
    assert library_options(seen[-1]) == {"min_cluster_size": None, "min_samples": 1, "strictness": None,
                                         "umap_dims": 32, "seed": 3, "algorithm": "hdbscan", "similarity": None,
                                         "fit_cut": True}
    result = CliRunner().invoke(probe, ["--umap-dims", "5000"])   # in click's range, not the library's
    assert isinstance(result.exception, ClusterError)


def test_status_repeats_a_sort_with_the_library_defaults():
    from illusort.status import CLUSTER_DEFAULTS

    defaults = ClusterOptions()
    assert {name: getattr(defaults, name) for name in CLUSTER_DEFAULTS} == CLUSTER_DEFAULTS


def test_exit_codes_are_the_enum_the_help_and_readme_state():
    assert [int(s) for s in ExitStatus] == [0, 1, 2, 3, 130]
    assert ExitStatus.ERROR == click.ClickException.exit_code and ExitStatus.USAGE == click.UsageError.exit_code
    assert all(f"{s.value} {s.meaning}" in " ".join(main.epilog.split()) for s in ExitStatus)
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    paragraph = readme.split("**Exit codes:**")[1].split("**")[0]
    assert [int(clause.split()[0]) for clause in paragraph.split(";") if re.match(r"\s*\d+ ", clause)] == \
        [int(s) for s in ExitStatus]


def group_running(failure):
    """A group with the real handler and one command that raises FAILURE."""
    group = IllusortGroup("probe")

    @group.command()
    def fail():
        raise failure

    return group


@pytest.mark.parametrize("failure,code,said", [
    (InputError("no folder \x1b[31mred"), ExitStatus.ERROR, "Error: no folder \\x1b[31mred"),
    (click.UsageError("give \x1b one"), ExitStatus.USAGE, "give \\x1b one"),
    (PermissionError(errno.EACCES, "Permission denied", "/x/y"), ExitStatus.ERROR,
     "Error: cannot use /x/y: Permission denied"),
    (KeyboardInterrupt(), ExitStatus.INTERRUPTED, "run the same command again to resume"),
])
def test_one_handler_turns_each_failure_into_its_exit_status(failure, code, said):
    result = CliRunner().invoke(group_running(failure), ["fail"])
    assert result.exit_code == code and said in result.output, result.output
    assert "Traceback" not in result.output and "\x1b" not in result.output


def test_a_bug_keeps_its_traceback():
    result = CliRunner().invoke(group_running(FileNotFoundError(errno.ENOENT, "gone", "x")), ["fail"])
    assert isinstance(result.exception, FileNotFoundError)
    result = CliRunner().invoke(group_running(ZeroDivisionError()), ["fail"])
    assert isinstance(result.exception, ZeroDivisionError)


def test_strict_exits_with_its_status(capsys):
    exit_if_strict(True, 0)
    exit_if_strict(False, 2)
    with pytest.raises(SystemExit) as stop:
        exit_if_strict(True, 2)
    assert stop.value.code == ExitStatus.SKIPPED and type(stop.value.code) is int
    assert "strict: 2 file(s) skipped (exit code 3)" in capsys.readouterr().err
