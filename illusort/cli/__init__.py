"""The `illusort` command line: a thin layer over `illusort.workflow` and friends.

- `definition.py`: every option several commands take, declared once; the library objects
  built from them (`Settings`, `ClusterOptions`);
- `group.py`: the `illusort` group and its one error handler; `exit_status.py`: the exit codes;
- `rendering.py`: what the commands print, every line through `terminal.shown`;
- the commands, by what they do: `sorting.py` (embed, cluster, sort, undo), `corrections.py`
  (name, merge, move, accept, reject), `views.py` (status, report, review, query),
  `training.py` (train, evaluate, models).

Heavy libraries (torch, umap) are imported inside the commands that embed, and only after
every check of the command line passed, so `--help`, `name`, `merge`, `move`, `report`,
`review`, `undo`, `status` and every mistake answer at once.
"""
from __future__ import annotations

from . import corrections, sorting, training, views
from .group import main

for _module in (sorting, corrections, views, training):
    for _command in _module.COMMANDS:
        main.add_command(_command)

__all__ = ["main"]
