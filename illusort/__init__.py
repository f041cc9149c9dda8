"""illusort: sort anime/manga illustrations by the character drawn in them.

The CLI (`illusort.cli`) is a thin layer over importable functions: `illusort.workflow`
(embed, cluster, sort, query a folder), `illusort.weights` (models), `illusort.evaluate`.
"""
__version__ = "0.1.0"
