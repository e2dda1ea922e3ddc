"""The parts of ``sonify_jax.train.checkpoints``, one job each.

* ``layout``: where a run's files are, what a step holds, run.json;
* ``checksums``: the per-step sha256 manifest and verified restores;
* ``retention``: the ``Checkpointer`` that saves a run and decides which
  steps stay on disk;
* ``selection``: which step a loader reads (``choose_step``);
* ``orbax_compat``: the workarounds for orbax's messages and failures.

Callers import ``sonify_jax.train.checkpoints``, which re-exports the public
names; nothing is imported here.
"""
