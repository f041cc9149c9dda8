"""The `illusort` command line: a thin layer over `illusort.workflow` and friends.

Heavy libraries (torch, umap) are imported inside the commands, so `--help` is instant.
"""
from __future__ import annotations

import functools
import json
import sys
import warnings
from pathlib import Path

import click

from . import __version__


def fail_cleanly(func):
    """Known failures become a one-line error and exit 1; Ctrl-C says how to resume."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from .cluster import ClusterError
        from .faces import FaceDetectorError
        from .images import BadImage
        from .index import IndexBusy
        from .sort import SortError
        from .weights import ModelError

        try:
            return func(*args, **kwargs)
        except (ModelError, SortError, IndexBusy, BadImage, ClusterError, FaceDetectorError, FileNotFoundError,
                NotADirectoryError) as error:
            raise click.ClickException(str(error)) from None
        except KeyboardInterrupt:
            click.echo("\ninterrupted: finished batches are saved; run the same command again to resume.", err=True)
            sys.exit(130)
    return wrapper


def model_options(func):
    """Options of every command that embeds images."""
    options = [
        click.option("--model", "-m", default=None, metavar="NAME|PATH",
                     help="Model name (in models/ or built in: lite0-imagenet, resnet18-imagenet, vgg16-imagenet, "
                          "hsv-hist) or a checkpoint .pt. Default: the shipped model."),
        click.option("--layer", default=None, metavar="LAYER", help="VGG16 layer: conv1..conv5, fc1, fc2."),
        click.option("--faces", type=click.Choice(["auto", "always", "off"]), default="auto", show_default=True,
                     help="Embed each anime face on its own (an image with two characters joins both): auto crops "
                          "faces that are small in the image (scenes, full body) and keeps icons and busts whole; "
                          "always crops every face found; off embeds whole images (fastest)."),
        click.option("--index", "index_path", type=click.Path(path_type=Path), default=None,
                     help="Index file (default: DIR/.illusort/index.db)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True),
        click.option("--precision", type=click.Choice(["auto", "float32", "bfloat16"]), default="auto", show_default=True,
                     help="auto: bfloat16 where the CPU or GPU has bf16 units (faster, same accuracy: "
                          "benchmarks/PERFORMANCE.md), float32 elsewhere. Index rows of each precision are kept apart."),
        click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True),
        click.option("--workers", type=click.IntRange(0), default=None,
                     help="Decoding processes (default: none on 2 cores or fewer, else up to 4; 0 = decode in line)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars."),
        click.option("--strict", is_flag=True, help="Exit with code 3 when any file was skipped."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


recluster_option = click.option(
    "--recluster", is_flag=True,
    help="Cluster everything again. By default a re-run reuses the last clustering: unchanged images keep "
         "their cluster and a few new ones (up to 10% since the last full run) join their nearest clusters.")


def cluster_options(func):
    options = [
        click.option("--min-cluster-size", type=click.IntRange(2), default=10, show_default=True,
                     help="Smallest group called a character (capped at an eighth of small folders)."),
        click.option("--strictness", type=click.FloatRange(0, 1), default=0.5, show_default=True,
                     help="How readily look-alike characters share a folder: towards 1, look-alikes are split "
                          "apart (more, smaller folders; more images unsorted); towards 0, fewer and larger "
                          "folders, almost nothing unsorted."),
        click.option("--paper-selection", is_flag=True,
                     help="HDBSCAN exactly as the clustering paper (excess of mass); ignores --strictness."),
        click.option("--min-samples", type=click.IntRange(1), default=1, show_default=True,
                     help="HDBSCAN min_samples: higher = denser groups, more images unsorted."),
        click.option("--umap-dims", type=click.IntRange(0), default=32, show_default=True,
                     help="UMAP dimensions before HDBSCAN; 0 clusters the raw embeddings."),
        click.option("--seed", type=int, default=None, help="Make clustering reproducible (slower: single thread)."),
        click.option("--algorithm", type=click.Choice(["hdbscan", "agglomerative"]), default="hdbscan",
                     show_default=True, help="hdbscan (the paper: UMAP + HDBSCAN) or agglomerative (average "
                     "linkage cut at --similarity; better when characters have few images each; up to 20,000 images)."),
        click.option("--similarity", type=click.FloatRange(-1, 1), default=None,
                     help="agglomerative: cosine similarity that joins groups (default: the model card's threshold)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def settings_from(kwargs):
    from .workflow import Settings

    return Settings(model=kwargs.pop("model"), layer=kwargs.pop("layer"), index=kwargs.pop("index_path"),
                    device=kwargs.pop("device"), batch_size=kwargs.pop("batch_size"),
                    workers=kwargs.pop("workers"), progress=not kwargs.pop("quiet"), faces=kwargs.pop("faces"),
                    precision=kwargs.pop("precision"))


def cluster_kwargs(kwargs):
    strictness, paper = kwargs.pop("strictness"), kwargs.pop("paper_selection")
    return {"min_cluster_size": kwargs.pop("min_cluster_size"), "min_samples": kwargs.pop("min_samples"),
            "strictness": None if paper else strictness,
            "umap_dims": kwargs.pop("umap_dims"), "seed": kwargs.pop("seed"),
            "algorithm": kwargs.pop("algorithm"), "similarity": kwargs.pop("similarity")}


def report_embedding(summary) -> None:
    click.echo(summary.line(), err=True)
    for path, reason in summary.skipped[:20]:
        click.echo(f"  skipped {path}: {reason}", err=True)
    if len(summary.skipped) > 20:
        click.echo(f"  ... and {len(summary.skipped) - 20} more skipped", err=True)


def exit_if_strict(strict: bool, summary, not_sorted: int = 0) -> None:
    """`--strict`: the command did its work, but a skipped file makes the exit code 3."""
    skipped = len(summary.skipped) + not_sorted
    if strict and skipped:
        click.echo(f"strict: {skipped} file(s) skipped", err=True)
        sys.exit(3)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="illusort")
def main():
    """Sort anime/manga illustrations by the character drawn in them."""
    warnings.filterwarnings("default", module="illusort")
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--ray", "use_ray", is_flag=True,
              help="Embed on Ray (pip install 'illusort[ray]'): a local instance, or --ray-address's cluster, "
                   "whose nodes see FOLDER at the same path.")
@click.option("--ray-address", default=None, metavar="ADDRESS", help="Ray cluster to join ('auto', ray://host:port).")
@click.option("--ray-actors", type=click.IntRange(1), default=None, help="Model replicas (default: one per CPU).")
@model_options
@fail_cleanly
def embed(folder, use_ray, ray_address, ray_actors, **kwargs):
    """Embed every image below FOLDER into its index (incremental; resumes when interrupted)."""
    from . import workflow

    runner = None
    settings = settings_from(kwargs)
    if use_ray or ray_address:
        from .distributed import ray_runner

        try:
            runner = ray_runner(ray_address, ray_actors, settings.model)
        except RuntimeError as error:
            raise click.ClickException(str(error)) from None
    model, index, summary = workflow.embed(folder, settings, runner=runner)
    index.close()
    click.echo(f"model {model.model_id}; index {index.path}", err=True)
    report_embedding(summary)
    exit_if_strict(kwargs["strict"], summary)


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Assignment CSV (path, face, cluster, probability). Default: DIR/.illusort/clusters.csv.")
@model_options
@cluster_options
@recluster_option
@fail_cleanly
def cluster(folder, output, recluster, **kwargs):
    """Group FOLDER's images into characters (embeds first, incrementally)."""
    from . import workflow

    options = cluster_kwargs(kwargs)
    model, index, summary = workflow.embed(folder, settings_from(kwargs))
    report_embedding(summary)
    with index:
        rows, clustering = workflow.cluster(index, model, recluster, **options)
    output = output or index.path.parent / "clusters.csv"
    workflow.write_assignment(output, rows, clustering)
    click.echo(clustering.summary())
    click.echo(f"assignment written to {output}", err=True)
    exit_if_strict(kwargs["strict"], summary)


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: FOLDER-sorted beside FOLDER).")
@click.option("--mode", type=click.Choice(["symlink", "copy", "hardlink", "move"]), default="symlink",
              show_default=True, help="How files get into the character folders.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--undo", is_flag=True, help="Reverse the sort in OUT (give the output folder as FOLDER or --out).")
@click.option("--known", type=click.Path(path_type=Path), default=None, metavar="REFS",
              help="Folder of REFS/<name>/<reference images>: images close enough to a reference go to OUT/<name>/ "
                   "(never forced: the rest are clustered).")
@click.option("--threshold", "-t", type=click.FloatRange(-1, 1), default=None,
              help="--known: cosine similarity an image needs to join a known character (default: the model "
                   "card's 1%-false-accept point; higher = fewer, surer matches).")
@model_options
@cluster_options
@recluster_option
@fail_cleanly
def sort(folder, out, mode, dry_run, undo, known, threshold, recluster, **kwargs):
    """Sort FOLDER into per-character folders: OUT/character-NNN/ and OUT/unsorted/.

    Never overwrites or loses a file. Re-running adds new images to the existing characters
    and keeps names and corrections (illusort name / merge / move, or folders renamed by hand)."""
    from . import workflow
    from .sort import undo_sort

    if undo:
        undone, left = undo_sort(out or folder)
        click.echo(f"undone {undone} entries" + (f"; {left} changed since and left in place" if left else ""))
        return
    options = cluster_kwargs(kwargs)
    planned, result, clustering, summary = workflow.sort(folder, out, settings_from(kwargs), mode, dry_run,
                                                         known, threshold, recluster, **options)
    report_embedding(summary)
    click.echo(clustering.summary())
    out = out or workflow.default_output(folder)
    if dry_run:
        for entry in planned[:50]:
            click.echo(f"{mode} {entry.src} -> {out / entry.dest}")
        if len(planned) > 50:
            click.echo(f"... {len(planned) - 50} more")
        return
    folders = ", ".join(f"{name} ({n})" for name, n in sorted(result.folders.items()))
    click.echo(f"{out}: {result.created} new, {result.removed} removed, {result.kept} kept; {folders}")
    if result.conflicts:
        click.echo(f"warning: {len(result.conflicts)} names already taken by other files were left alone",
                   err=True)
    for src, reason in result.unavailable[:20]:
        click.echo(f"warning: not sorted {src}: {reason}", err=True)
    if len(result.unavailable) > 20:
        click.echo(f"  ... and {len(result.unavailable) - 20} more not sorted", err=True)
    exit_if_strict(kwargs["strict"], summary, len(result.unavailable))


index_option = click.option("--index", "index_path", type=click.Path(path_type=Path), default=None,
                            help="Index of the sorted folder, if sort was given one.")


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("folder")
@click.argument("name")
@index_option
@fail_cleanly
def name(out, folder, name, index_path):
    """Name the character in OUT/FOLDER: the folder becomes OUT/NAME (merged into it if it
    exists), and later sorts keep these images, and new ones like them, under NAME."""
    from . import corrections

    moved = corrections.name_character(out, folder, name, index_path)
    click.echo(f"{len(moved)} images now in {Path(out) / name}")


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("into")
@click.argument("others", nargs=-1, required=True)
@index_option
@fail_cleanly
def merge(out, into, others, index_path):
    """Merge character folders OTHERS into INTO (one character split in several clusters)."""
    from . import corrections

    moved = corrections.merge_characters(out, into, list(others), index_path)
    click.echo(f"{len(moved)} images moved into {Path(out) / into}")


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--to", "to", default=None, metavar="NAME", help="The character folder they belong in.")
@click.option("--not-character", is_flag=True, help="Not a character: set aside in OUT/not-a-character/.")
@index_option
@fail_cleanly
def move(out, files, to, not_character, index_path):
    """Move images of OUT (FILES, paths inside OUT) to another character; remembered by later sorts."""
    from . import corrections
    from .sort import NOT_A_CHARACTER

    if bool(to) == not_character:
        raise click.UsageError("give either --to NAME or --not-character")
    moved = corrections.move_images(out, list(files), NOT_A_CHARACTER if not_character else to, index_path)
    click.echo(f"{len(moved)} images moved to {Path(out) / (to or NOT_A_CHARACTER)}")


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@fail_cleanly
def report(out, quiet):
    """Write OUT/report.html: each character as a contact sheet, the unsorted images, and what
    is new since the last report (thumbnails cached in OUT/.illusort-thumbs)."""
    from .report import write_report

    path, stats = write_report(out, progress=not quiet)
    click.echo(f"{path}: {stats['characters']} characters, {stats['images']} images, {stats['new']} new")


@main.command()
@click.argument("references", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--in", "folder", type=click.Path(path_type=Path), default=".", show_default=True,
              help="Folder to search (it is embedded incrementally first).")
@click.option("--top", "-k", type=click.IntRange(1), default=None, help="At most this many results.")
@click.option("--threshold", "-t", type=float, default=None,
              help="Minimum cosine similarity (default: the model card's; none for untrained models).")
@click.option("--link", type=click.Path(path_type=Path), default=None,
              help="Also gather the matches into this folder as symlinks.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--no-update", is_flag=True,
              help="Search the index as it is: skip looking for new or changed files (fast on huge folders).")
@model_options
@fail_cleanly
def query(references, folder, top, threshold, link, as_json, no_update, **kwargs):
    """Find every image of the character in REFERENCES (one or more images) in a folder."""
    from . import workflow

    hits, used, summary = workflow.query(list(references), folder, settings_from(kwargs), top, threshold,
                                         update=not no_update)
    report_embedding(summary)
    if used is None and top is None:
        hits = hits[:20]
        click.echo("note: the model has no calibrated threshold; showing the 20 best (use --top/--threshold)",
                   err=True)
    if as_json:
        click.echo(json.dumps({"threshold": used, "matches": [{"path": p, "score": s} for p, s in hits]}, indent=1))
    else:
        for path, score in hits:
            click.echo(f"{score:.3f}  {Path(folder) / path}")
    if link:
        result = workflow.link_matches(folder, [p for p, _ in hits], link)
        click.echo(f"{result.created} new links in {link} ({sum(result.folders.values())} in all); "
                   f"undo with: illusort sort --undo {link}", err=True)
    exit_if_strict(kwargs["strict"], summary)


@main.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--characters", type=click.Choice(["all", "train", "dev", "test"]), default="all", show_default=True,
              help="Score only this part of the model card's character split (test = characters the model never saw).")
@click.option("--all-layers", is_flag=True,
              help="VGG16 only: AMI and EER of every layer conv1..conv5, fc1, fc2 (the paper's Table 1).")
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), default=Path("illusort-eval"),
              show_default=True, help="Folder for the FAR/FRR curve PNG, the per-image CSV and the result JSON.")
@click.option("--label-depth", type=click.IntRange(1), default=1, show_default=True,
              help="Folder levels that name a character (2 for a folder of sources: SOURCE/CHARACTER/...).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@model_options
@cluster_options
@fail_cleanly
def evaluate(folder, characters, all_layers, out_dir, label_depth, as_json, **kwargs):
    """Score a model on a labelled FOLDER of CHARACTER/IMAGE files: AMI, ARI, noise, clusters,
    EER (overall and per images-per-character bucket). Reproducible: --seed defaults to 0."""
    from . import evaluate as ev

    options = cluster_kwargs(kwargs)
    seed = 0 if options["seed"] is None else options["seed"]
    settings = settings_from(kwargs)
    try:
        if all_layers:
            if settings.layer:
                raise click.UsageError("--all-layers scores every layer; leave out --layer")
            result = ev.layer_table(folder, settings, options, characters=characters, out_dir=out_dir,
                                    seed=seed, depth=label_depth)
        else:
            result = ev.evaluate_folder(folder, settings, options, characters=characters, out_dir=out_dir,
                                        seed=seed, depth=label_depth)
    except ev.EvaluationError as error:
        raise click.ClickException(str(error)) from None
    if "embedding" in result:
        click.echo(result["embedding"], err=True)
    for path, reason in result["skipped_files"][:20]:
        click.echo(f"  not scored {path}: {reason}", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=1))
    else:
        click.echo(ev.format_table(result) if all_layers else ev.format_result(result))
        if result.get("trained_on") and characters == "all":
            click.echo(f"note: the model was trained on {result['trained_on']} of these characters; "
                       "--characters test scores only unseen ones", err=True)
        click.echo(f"curves and details in {out_dir}", err=True)
    if kwargs["strict"] and result["skipped"]:
        click.echo(f"strict: {result['skipped']} labelled image(s) could not be read", err=True)
        sys.exit(3)


@main.command("train")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(["triplet", "finetune", "deepcluster", "ft+dc"]), default="triplet",
              show_default=True, help="triplet (the blog), finetune (classify the training characters), "
                                      "deepcluster (k-means pseudo-labels; unlabelled folders too), "
                                      "ft+dc (deepcluster from a finetune checkpoint given as --init).")
@click.option("--arch", type=click.Choice(["resnet18", "vgg16", "lite0"]), default=None,
              help="Network (default: resnet18 for triplet, vgg16 for the others).")
@click.option("--init", default="imagenet", show_default=True, metavar="imagenet|lite0|none|PATH",
              help="Starting weights: torchvision ImageNet (needs a download once), lite0 (EfficientNet-Lite0 "
                   "ImageNet, installed offline; implies --arch lite0), none (random), or an illusort checkpoint.")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=None,
              help="Model to write (default models/METHOD-ARCH.pt); also OUT.last.pt (resume) and OUT.log.jsonl.")
@click.option("--epochs", type=click.IntRange(1), default=None,
              help="Epochs in all (default 30 triplet, 20 others); with --resume, the new total.")
@click.option("--lr", type=float, default=None, help="Learning rate (default 1e-3; 1e-4 for deepcluster).")
@click.option("--batch-size", type=click.IntRange(2), default=None,
              help="triplet: character images per batch (default 100, plus --random-extra); others: default 64.")
@click.option("--loss", type=click.Choice(["triplet", "multi-similarity", "arcface", "subcenter-arcface"]),
              default="triplet", show_default=True,
              help="triplet method: the blog's TripletMarginLoss(0.1, cosine), or pytorch-metric-learning's "
                   "MultiSimilarityLoss with its miner, ArcFaceLoss or SubCenterArcFaceLoss (3 centres).")
@click.option("--ce-weight", type=click.FloatRange(0), default=0.0, show_default=True,
              help="triplet: weight of a classification term over the training characters (normalised "
                   "softmax) added to the pair loss; 0 = pair loss only.")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd", show_default=True,
              help="sgd (momentum 0.9, the sources' choice) or adamw (converges in fewer steps: CPU-sized runs).")
@click.option("--per-class", type=click.IntRange(1), default=10, show_default=True,
              help="triplet: at most this many images of one character per batch.")
@click.option("--random-extra", type=click.IntRange(0), default=100, show_default=True,
              help="triplet: random images of other characters added to each batch as negatives.")
@click.option("--input-size", type=click.IntRange(16), default=None,
              help="Input pixels (default 128, practical on a CPU; recorded in the model card).")
@click.option("--embed-dim", type=click.IntRange(0), default=None,
              help="Linear embedding head size (default 500 for triplet; none (0) for the others).")
@click.option("--k", type=click.IntRange(2), default=3000, show_default=True,
              help="deepcluster: pseudo-classes (capped at a quarter of the training images).")
@click.option("--dev", "dev_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Extra labelled folder whose characters all join the dev set (e.g. for deepcluster on "
                   "unlabelled images). Repeatable.")
@click.option("--label-depth", type=click.IntRange(1), default=1, show_default=True,
              help="Folder levels that name a character (2 for a folder of sources: SOURCE/CHARACTER/...).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split, batches and augmentation.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(0), default=None, help="Decoding processes (default: up to 4).")
@click.option("--resume", is_flag=True, help="Continue the interrupted (or finished) run at --out.")
@click.option("--faces", type=click.Choice(["off", "auto", "always"]), default="off", show_default=True,
              help="Train on the largest anime face of each image (auto: when it is small in the image), as "
                   "`embed --faces` would crop it.")
@click.option("--overwrite", is_flag=True, help="Start again even though --out exists.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@fail_cleanly
def train_command(dirs, quiet, **kwargs):
    """Train a model on labelled folders DIR/<character>/<images> (several DIRs: characters are
    DIRNAME/<character>), split by character 3:1:1 into train/dev/test.

    Keeps the best epoch by dev EER at --out, with a model card holding the split, the dev-set
    threshold (used by `query`) and test scores."""
    from .train import TrainError, TrainingInterrupted, train

    try:
        card = train(list(dirs), progress=not quiet, log=lambda message: click.echo(message, err=True), **kwargs)
    except TrainError as error:
        raise click.ClickException(str(error)) from None
    except TrainingInterrupted as stop:
        click.echo(f"\ninterrupted: {stop}; run the same command with --resume to continue.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: continue from the last finished epoch (if any) by running the same command "
                   "with --resume.", err=True)
        sys.exit(130)
    dev, test = (card.get("metrics") or {}).get("dev"), (card.get("metrics") or {}).get("test")
    parts = [f"{card['name']}: {card['method']} {card['arch']}, {card['epochs']} epochs (best {card['best_epoch']})"]
    if dev:
        parts.append(f"dev EER {dev['eer']:.3f} (threshold {card['threshold']:.3f})")
    if test:
        parts.append(f"test EER {test['eer']:.3f}")
    click.echo("; ".join(parts))


if __name__ == "__main__":
    main()
