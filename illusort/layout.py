"""Every name illusort keeps on disk, and every key it keeps in an index's meta table.

One place, so that the modules that write these files and the ones that must never scan,
serve or undo them agree (nothing here imports anything of illusort's).
"""
from __future__ import annotations

import os

# ---- IN: the folder being sorted ---------------------------------------------------------------
INDEX_DIRNAME = ".illusort"          # IN/.illusort: the index and its caches; never scanned
INDEX_FILE = "index.db"              # IN/.illusort/index.db
VECTOR_CACHE_SUFFIX = ".vectors"     # index.db.vectors/<model key>-*.npy (memory-mapped vectors)

# ---- OUT: a sorted output ----------------------------------------------------------------------
MANIFEST = ".illusort-sort.json"     # every entry a sort made (a folder holding one is never scanned)
LOCK = ".illusort-sort.lock"         # one writer per OUT
PARTIAL = ".illusort-partial"        # `.name.illusort-partial`: a copy in progress
UNSORTED = "unsorted"                # pictures no character took
NOT_A_CHARACTER = "not-a-character"  # pictures the user marked so (kept, never deleted)
SPECIAL_FOLDERS = (UNSORTED, NOT_A_CHARACTER)

# The review page's files in OUT (`sort --undo` removes them too).
REPORT = "report.html"
THUMBS = ".illusort-thumbs"
SEEN = ".illusort-report.json"       # the pictures the report showed last time
REVIEW_FILES = (REPORT, THUMBS, SEEN)
TEMPORARIES = (".report.html.tmp", ".illusort-report.json.tmp")
OWN_NAMES = (REPORT,)                # illusort's own names in OUT that do not start with '.'
OWN_FILES = frozenset({LOCK, MANIFEST + ".tmp", *REVIEW_FILES, *TEMPORARIES})

# ---- index meta keys ---------------------------------------------------------------------------
META_IDENTITY = "identity"           # a random id of this index file: with its change count, the stamp of cached vectors
META_LAST_SORT = "last sort"         # the latest sort from this folder, into any OUT
META_SKIPS_REPORTED = "skips reported"  # + model id: the unreadable files the last run said it skipped


def queue_key(out) -> str:
    """The meta key of the numbers `status` shows for OUT's suggestions (kept from one answer to the next)."""
    return f"queue numbers {os.path.realpath(out)}"


def sort_key(out) -> str:
    """The meta key of the last sort into OUT: one folder sorted into several outputs
    (say, with two models) keeps each output's model and options apart."""
    return f"sort into {os.path.realpath(out)}"
