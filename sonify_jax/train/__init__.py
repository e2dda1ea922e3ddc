"""Training: losses, metrics, optimiser, train state, data-parallel steps,
and (engineer TRAINER) the trainer, checkpoints and evaluation loops.

Submodules are imported explicitly (``from sonify_jax.train import steps``);
nothing heavy is imported here so host-only users (metrics) stay light.
"""
