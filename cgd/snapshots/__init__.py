"""Snapshots: immutable, content-hashed curations of finished jobs' triplets, exported as
training files (``/v1/snapshots``, ``cgd snapshots``).

- :mod:`.ops` — operations: create (inline or on the curation queue), get, list, delete, card,
  export, and the sweeper's half (lost builds)
- :mod:`.schemas` — request and response bodies (the curation spec itself is the curation
  engine's, :class:`cgd.curation.filters.CurationSpec`)
- :mod:`.errors` — what the operations raise

The curation logic is the engine in :mod:`cgd.curation`.
"""
