"""Switches for the fast paths of issue 14, so a benchmark can run the previous code path
beside the new one in the same run (`benchmarks/bench_sort.py`).

`ILLUSORT_SLOW=draft,faces,numba,knn,vcache` (comma-separated, or `all`) turns the named
fast paths off in this process and the processes it starts:

- `draft`: reduced-scale decoding (JPEG draft before face detection, PNG/WebP `reduce`);
- `faces`: cheap face detection (`faces.face_boxes`: skipping tiny images, a low-resolution
  first look that settles icons and busts);
- `workers`: decoding/detection in worker processes on two cores when faces are detected;
- `numba`: UMAP's numba functions cached in the user cache folder;
- `knn`: exact neighbours by numpy for small folders instead of UMAP's pairwise loop;
- `vcache`: the memory-mapped vector cache beside the index (`index.VectorCache`).

Nothing here changes results beyond floating-point noise; it exists for measurement only.
"""
from __future__ import annotations

import os

NAMES = ("draft", "faces", "workers", "numba", "knn", "vcache")


def enabled(name: str) -> bool:
    """True unless `ILLUSORT_SLOW` names this fast path (or says `all`)."""
    slow = {s.strip() for s in os.environ.get("ILLUSORT_SLOW", "").split(",") if s.strip()}
    return not ({name, "all"} & slow)
