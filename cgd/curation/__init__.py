"""Curation of triplets into snapshots and their export (pure: no database, no web framework).

Modules: ``filters`` (the spec and per-triplet filters), ``decontam``, ``dedup``, ``split``,
``snapshot`` (``curate``, ``content_hash``), ``formats`` (training input/target per mode),
``export`` (streaming JSONL/Parquet), ``card`` (dataset card), ``eval_sets`` (bundled eval data).
Nothing is re-exported here so that importing ``formats`` or ``export`` stays light.
"""
