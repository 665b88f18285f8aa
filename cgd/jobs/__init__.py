"""Generation jobs: run a dataset through probe → critique → refine → verify
(``/v1/jobs``, ``cgd jobs``).

- :mod:`.ops` — operations: create (idempotent), status, list, cancel, retry-failed, resume,
  delete, triplets
- :mod:`.preflight` — endpoints checked before a job is accepted
- :mod:`.pause` — paused jobs (circuit breaker): resume by hand or after a probe
- :mod:`.schemas` — request and response bodies (the job spec itself is the generation engine's,
  :class:`cgd.generation.spec.JobSpec`)
- :mod:`.errors` — what the operations raise

The work itself is done by the engine in :mod:`cgd.generation`, on the workers.
"""
