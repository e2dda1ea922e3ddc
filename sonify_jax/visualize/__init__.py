"""Feature visualization: listen to the sound a map wants to hear.

``visualize(params, net, layer, maps, key)`` synthesises, for each map of a
block (or each class of the head), the waveform that drives it the most
(:mod:`.optimize`); the command ``python -m sonify_jax.visualize`` writes
them as WAV, spectrogram and ``visualize.json`` (:mod:`.files`).
"""
from sonify_jax.visualize.objective import HEAD
from sonify_jax.visualize.optimize import Settings, Visualization, visualize

__all__ = ["HEAD", "Settings", "Visualization", "visualize"]
