"""The commands that correct a sort, remembered by later sorts: `name`, `merge`, `move`, and
`accept` / `reject` of the suggestions `illusort status` lists."""
from __future__ import annotations

from pathlib import Path

import click

from ..terminal import command
from .definition import sorted_in_option, sorted_index_option, sorted_output_command
from .rendering import echo, plural


@click.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("folder")
@click.argument("name")
@sorted_index_option
@sorted_in_option
def name(out, folder, name, index_path, source):
    """Name the character in OUT/FOLDER (FOLDER: its name in OUT, or a path to it): the folder
    becomes OUT/NAME (merged into it if it exists), and later sorts keep these images, and new
    ones like them, under NAME."""
    from .. import corrections
    from ..status import find_sort

    find_sort(out, "name")
    folder = corrections.check_character_folder(folder, out)
    corrections.check_character_name(name)
    moved = corrections.name_character(out, folder, name, index_path, source)
    total = len(corrections.folder_entries(out, name))
    if folder == name:   # named already (e.g. renamed in a file manager): now remembered too
        echo(f"{Path(out) / name} already has that name: its {plural(total, 'image')} stay {name} "
             "in later sorts")
        return
    echo(f"{plural(len(moved), 'image')} now in {Path(out) / name}")
    if total != len(moved):
        echo(f"{name} already existed: {folder} was merged into it (it now holds {plural(total, 'image')}); "
             f"to take that back: {command('illusort', 'undo', out, '--last')}")


@click.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("into")
@click.argument("others", nargs=-1, required=True)
@sorted_index_option
@sorted_in_option
def merge(out, into, others, index_path, source):
    """Merge character folders OTHERS into INTO (one character split in several clusters)."""
    from .. import corrections
    from ..status import find_sort

    find_sort(out, "merge")
    into, *others = (corrections.check_character_folder(character, out) for character in (into, *others))
    moved = corrections.merge_characters(out, into, list(others), index_path, source)
    echo(f"{plural(len(moved), 'image')} moved into {Path(out) / into}")


@click.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--to", "to", default=None, metavar="NAME", help="The character folder they belong in.")
@click.option("--not-character", is_flag=True, help="Not a character: set aside in OUT/not-a-character/.")
@click.option("--not", "not_name", default=None, metavar="NAME",
              help="Not this character: remembered, and out of NAME's folder (to unsorted/) if there.")
@sorted_index_option
@sorted_in_option
def move(out, files, to, not_character, not_name, index_path, source):
    """Move pictures of OUT to another character; remembered by later sorts. FILES are paths
    inside OUT, e.g. character-007/x.png (as the report and `illusort status` show them)."""
    from .. import corrections
    from ..layout import NOT_A_CHARACTER
    from ..status import find_sort

    if [bool(to), not_character, bool(not_name)].count(True) != 1:
        raise click.UsageError("give either --to NAME, --not NAME or --not-character")
    find_sort(out, "move")
    if not_name:
        corrections.check_character_name(not_name, "--not NAME")
        moved = corrections.reject_images(out, list(files), not_name, index_path, source)
        echo(f"{plural(len(files), 'image')} remembered as not {not_name}"
             + (f"; {len(moved)} moved to unsorted/" if moved else ""))
        return
    if not not_character:
        corrections.check_character_name(to, "--to NAME")
    moved = corrections.move_images(out, list(files), NOT_A_CHARACTER if not_character else to, index_path,
                                    source)
    echo(f"{plural(len(moved), 'image')} moved to {Path(out) / (to or NOT_A_CHARACTER)}")


@click.command()
@sorted_output_command
@click.argument("numbers", nargs=-1, type=click.IntRange(1))
@click.option("--all-above", type=click.FloatRange(-1, 1), default=None, metavar="SIMILARITY",
              help="Every suggested placing, move and merge at this similarity or more (splits only by number).")
def accept(out, numbers, all_above, index_path, source):
    """Take suggestions of `illusort status OUT` by their numbers, or all above a similarity: the
    pictures move, folders merge or split, and later sorts keep it (undo: illusort undo OUT --last)."""
    from .. import suggest

    if bool(numbers) == (all_above is not None):
        raise click.UsageError("give suggestion numbers or --all-above SIMILARITY (one of the two)")
    taken = suggest.accept(out, list(numbers), all_above, index_path, source)
    echo(f"accepted {plural(len(taken), 'suggestion')}" + ("" if taken else " (none at that similarity)"))


@click.command()
@sorted_output_command
@click.argument("numbers", nargs=-1, required=True, type=click.IntRange(1))
def reject(out, numbers, index_path, source):
    """Say no to suggestions of `illusort status OUT`: a picture is remembered as not that
    character, a merge or split is never proposed again. Nothing moves."""
    from .. import suggest

    taken = suggest.reject(out, list(numbers), index_path, source)
    echo(f"rejected {plural(len(taken), 'suggestion')}; remembered by later sorts and suggestions")


COMMANDS = (name, merge, move, accept, reject)
