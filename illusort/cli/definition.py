"""Every option that more than one command takes, declared once (httpie's `cli/definition.py`,
sqlite-utils' shared option decorators), and the objects the library takes built from them.

Each flag has one `click.option` in the whole `cli` package (tests/test_cli_definition.py
parses the source to keep it so): an option whose help or default differs per command is a
function of that difference. Every `click.Choice` is a library constant, importable without
torch, and the clustering defaults are `ClusterOptions`' own.
"""
from __future__ import annotations

from pathlib import Path

import click

from .. import registry
from ..cluster import ALGORITHMS, ClusterOptions
from ..faces import FACE_MODES
from .rendering import show_progress

CLUSTER_DEFAULTS = ClusterOptions()


def compose(*decorators):
    """One decorator applying DECORATORS in the order written (the first is the outermost)."""
    def apply(func):
        for decorator in reversed(decorators):
            func = decorator(func)
        return func
    return apply


def given(name: str) -> bool:
    """Whether the user gave option `name` (not its default)."""
    source = click.get_current_context().get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


# ---- options several commands take, with what differs between them as arguments

def faces_option(help: str):
    return click.option("--faces", type=click.Choice(FACE_MODES), default="auto", show_default=True, help=help)


def device_option():
    return click.option("--device", type=click.Choice(registry.DEVICES), default="auto", show_default=True)


def workers_option(help: str):
    return click.option("--workers", type=click.IntRange(0), default=None, help=help)


def batch_size_option(smallest: int, default: int | None, help: str | None = None):
    return click.option("--batch-size", type=click.IntRange(smallest), default=default,
                        show_default=default is not None, help=help)


def quiet_option(help: str = "No progress bars."):
    return click.option("--quiet", "-q", is_flag=True, help=help)


def json_option(help: str = "Print one JSON object."):
    return click.option("--json", "as_json", is_flag=True, help=help)


def out_option(help: str, name: str = "out", default: Path | None = None):
    return click.option("--out", "-o", name, type=click.Path(path_type=Path), default=default,
                        show_default=default is not None, help=help)


def index_option(help: str):
    return click.option("--index", "index_path", type=click.Path(path_type=Path), default=None, help=help)


def in_option(name: str, help: str, metavar: str | None = None):
    return click.option("--in", name, type=click.Path(path_type=Path), default=None, metavar=metavar, help=help)


def threshold_option(help: str, type=float):
    return click.option("--threshold", "-t", type=type, default=None, help=help)


def seed_option(default: int | None, help: str):
    return click.option("--seed", type=int, default=default, show_default=default is not None, help=help)


label_depth_option = click.option(
    "--label-depth", type=click.IntRange(1), default=1, show_default=True,
    help="Folder levels that name a character (2 for a folder of sources: SOURCE/CHARACTER/...).")


# ---- the commands that embed: a model and how to run it

model_options = compose(
    click.option("--model", "-m", default=None, metavar="NAME|PATH", help=registry.model_help()),
    click.option("--layer", default=None, metavar="LAYER", help="VGG16 layer: conv1..conv5, fc1, fc2."),
    faces_option("Embed each anime face on its own (an image with two characters joins both): auto crops "
                 "faces that are small in the image (scenes, full body) and keeps icons and busts whole; "
                 "always crops every face found; off embeds whole images (fastest)."),
    index_option("Index file (default: DIR/.illusort/index.db)."),
    device_option(),
    click.option("--precision", type=click.Choice(registry.PRECISIONS), default="auto", show_default=True,
                 help="auto: bfloat16 where the CPU or GPU has bf16 units (faster, same accuracy: "
                      "benchmarks/PERFORMANCE.md), float32 elsewhere. Index rows of each precision are kept apart."),
    batch_size_option(1, 32),
    workers_option("Decoding processes (default: none on 2 cores or fewer, else up to 4; 0 = decode in line)."),
    quiet_option(),
    click.option("--strict", is_flag=True, help="Exit with code 3 when any file was skipped."),
)


def settings_from(kwargs: dict):
    """The `workflow.Settings` of `model_options`, popped from a command's KWARGS."""
    from ..workflow import Settings

    return Settings(model=kwargs.pop("model"), layer=kwargs.pop("layer"), index=kwargs.pop("index_path"),
                    device=kwargs.pop("device"), batch_size=kwargs.pop("batch_size"),
                    workers=kwargs.pop("workers"), progress=show_progress(kwargs.pop("quiet")), faces=kwargs.pop("faces"),
                    precision=kwargs.pop("precision"))


# ---- the commands that cluster

cluster_options = compose(
    click.option("--min-cluster-size", type=click.IntRange(2), default=CLUSTER_DEFAULTS.min_cluster_size,
                 help="Smallest group called a character (default 2 with average linkage, 10 with HDBSCAN; "
                      "capped at an eighth of small folders)."),
    click.option("--strictness", type=click.FloatRange(0, 1), default=CLUSTER_DEFAULTS.strictness, show_default=True,
                 help="How readily look-alike characters share a folder: towards 1, look-alikes are split "
                      "apart (more, smaller folders; more images unsorted); towards 0, fewer and larger "
                      "folders, almost nothing unsorted."),
    click.option("--paper-selection", is_flag=True,
                 help="HDBSCAN exactly as the clustering paper (excess of mass); ignores --strictness."),
    click.option("--min-samples", type=click.IntRange(1), default=CLUSTER_DEFAULTS.min_samples, show_default=True,
                 help="HDBSCAN min_samples: higher = denser groups, more images unsorted."),
    click.option("--umap-dims", type=click.IntRange(0), default=CLUSTER_DEFAULTS.umap_dims, show_default=True,
                 help="UMAP dimensions before HDBSCAN; 0 clusters the raw embeddings."),
    seed_option(CLUSTER_DEFAULTS.seed, "Make clustering reproducible (slower: single thread)."),
    click.option("--algorithm", type=click.Choice(ALGORITHMS), default=CLUSTER_DEFAULTS.algorithm, show_default=True,
                 help="auto: average linkage from 100 to 10,000 pictures (forms characters from 2 pictures up), "
                      "HDBSCAN outside; hdbscan (the paper); agglomerative (average linkage cut at "
                      "--similarity, up to 20,000 pictures)."),
    click.option("--similarity", type=click.FloatRange(-1, 1), default=CLUSTER_DEFAULTS.similarity,
                 help="agglomerative: the lowest cosine similarity that joins groups (default: the model card's "
                      "threshold; raised on this folder where that makes folders more distinct, see --fit-cut)."),
    click.option("--fit-cut/--no-fit-cut", default=CLUSTER_DEFAULTS.fit_cut, show_default=True,
                 help="agglomerative: raise the cut above --similarity while folders grow more distinct "
                      "(silhouette): art unlike the training art (3D, grayscale) is not chained into one folder."),
)

recluster_option = click.option(
    "--recluster", is_flag=True,
    help="Cluster everything again. By default a re-run reuses the last clustering: unchanged images keep "
         "their cluster and a few new ones (up to 10% since the last full run) join their nearest clusters.")

# The `ClusterOptions` fields the command line sets, in the order `sort` records them in the index.
CLUSTER_FIELDS = ("min_cluster_size", "min_samples", "strictness", "umap_dims", "seed", "algorithm", "similarity",
                  "fit_cut")


def cluster_options_from(kwargs: dict) -> ClusterOptions:
    """The `ClusterOptions` of `cluster_options`, popped from a command's KWARGS and checked
    here, once (a value out of range is one line, `ClusterError`, before any work)."""
    strictness, paper = kwargs.pop("strictness"), kwargs.pop("paper_selection")
    others = {name: kwargs.pop(name) for name in CLUSTER_FIELDS if name != "strictness"}
    return ClusterOptions(strictness=None if paper else strictness, **others)


def library_options(options: ClusterOptions) -> dict:
    """BRIDGE, until the library takes a `ClusterOptions` (issue 24, step 4: `workflow.SortRequest`):
    the dict `workflow.sort_folder`, `workflow.cluster` and `evaluate` take today, exactly the
    fields the command line sets (a sort records it in the index; `status` repeats it)."""
    return {name: getattr(options, name) for name in CLUSTER_FIELDS}


def given_cluster_options(kwargs: dict) -> dict:
    """Which clustering options the user gave (call before `cluster_options_from` pops them),
    for the notes on options that had no effect."""
    return {"strictness": given("strictness"), "paper": kwargs.get("paper_selection"),
            "algorithm": kwargs.get("algorithm"), "similarity": given("similarity"), "min_samples": given("min_samples"),
            "min_cluster_size": kwargs.get("min_cluster_size") if given("min_cluster_size") else None}


# ---- the commands on a sorted OUT

sorted_index_option = index_option("Index of the sorted folder, if sort was given one.")
sorted_in_option = in_option("source", "The sorted folder (default: the one OUT's manifest names, if that folder's "
                                       "index records the sort).", metavar="DIR")
sorted_output_command = compose(click.argument("out", type=click.Path(path_type=Path)), sorted_index_option,
                                sorted_in_option)
