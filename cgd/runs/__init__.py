"""Training runs: fine-tune a student on a snapshot (``/v1/training-runs``, ``cgd runs``).

- :mod:`.ops` — operations: create, get, list, events, cancel; the trainer's side (events in,
  authorised by a per-run token); the sweeper's half (runs whose trainer went silent)
- :mod:`.schemas` — request and response bodies
- :mod:`.errors` — what the operations raise

The training itself is the engine in :mod:`cgd.train`, run by ``cgd trainer``.
"""
