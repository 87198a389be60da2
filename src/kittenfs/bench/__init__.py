"""The benchmark suite: kittenFS against references measured in the same run.

``kittenfs bench`` (or ``python -m kittenfs.bench``) starts a local cluster, or targets a
running one with ``--url``, drives it with a multi-process aiohttp load generator, measures
the references (nginx serving the same files, and the disk itself) with the same generator,
and prints a table and JSON with kittenFS's figures as ratios to the references.
"""
