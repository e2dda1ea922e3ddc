"""Feature visualization: the waveform that drives each map the most.

For every requested map, from its own random Fourier coefficients
(:mod:`.parametrize`), ``steps`` of AdamW (optax) on the map's objective
(:mod:`.objective`) seen through random robustness transforms
(:mod:`.transforms`), less a penalty on samples beyond full scale. The
optimisation is one ``lax.scan``, ``vmap``-ed over maps, in memory-bounded
chunks of maps, each chunk split over every local device
(:mod:`sonify_jax.over_devices`). Map ``m`` starts from and draws its
transforms with ``fold_in(key, m)``, so its result does not depend on the
other maps asked for with it, and the same key gives the same sound.

Hand-written around optax because no kept library optimises an input for
audio (Lucid and Lucent are image-only, TensorFlow and PyTorch).
"""
import dataclasses
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sonify_jax import deconvnet, over_devices
from sonify_jax.errors import UserError
from sonify_jax.models import network as network_lib
from sonify_jax.transpose import budget
from sonify_jax.visualize import objective, parametrize, transforms

Params = Any


@dataclasses.dataclass(frozen=True)
class Settings:
  """How a visualization is optimised (hashable: a static argument)."""
  steps: int = 256
  learning_rate: float = 0.05
  init_std: float = 0.01       # of the random start's coefficients
  # AdamW's decay of the coefficients: a frequency the map does not ask for
  # fades instead of drifting (with Adam's equal steps and a 1/f scale, a
  # low one drifts loudest); on CREPE tiny's head it took pyin's agreement
  # with the bin from 0.14 to 0.76 of frames (docs/visualize.md).
  weight_decay: float = 1.0
  rms: float = 0.1             # the waveform's loudness (-20 dBFS)
  jitter_seconds: float = 0.002  # random time shift, each way
  gain_db: float = 6.0         # random gain, each way
  noise: float = 0.02          # white noise, relative to ``rms``
  clip_penalty: float = 10.0   # on the mean square beyond full scale
  where: str = "mean"          # a block map's time reduction (objective.WHERE)

  def jitter(self, sample_rate: int) -> int:
    return int(round(self.jitter_seconds * sample_rate))

  def to_dict(self):
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Visualization:
  """``waveforms [maps, T]`` at the network's rate; ``activation [maps]``
  (each map's objective on its waveform, no transform) and ``start`` (on
  the random waveform it started from); ``history [maps, steps]`` (the
  objective through the transforms at each step)."""
  maps: np.ndarray
  waveforms: np.ndarray
  activation: np.ndarray
  start: np.ndarray
  history: np.ndarray


def visualize(params: Params, net: network_lib.Network,
              layer: objective.Layer, maps: Sequence[int], key: jax.Array,
              *, seconds: float = 0.5, settings: Settings = Settings(),
              scale: Optional[np.ndarray] = None,
              budget_bytes: Optional[int] = None) -> Visualization:
  """Synthesise the waveform that maximally drives each of ``maps``.

  Args:
    params: the network's params (with the head's for ``layer='head'``).
    net: the network.
    layer: a block number (1-based) or ``'head'`` (maps are its classes).
    maps: map (or class) indices.
    key: a PRNG key; the same key gives the same waveforms.
    seconds: the waveforms' length.
    settings: the optimisation (:class:`Settings`).
    scale: the decorrelating scale, ``[P // 2 + 1]`` for ``P`` = the length
      plus twice the jitter (:func:`padded_length`); default ``1/f``.
    budget_bytes: memory bound of one chunk of maps.
  Raises:
    UserError before any computation for an invalid request.
  """
  objective.check(net, layer, settings.where)
  length = int(round(seconds * net.sample_rate))
  needed = objective.min_length(net, layer)
  if length < needed:
    raise UserError(f"{seconds:g} s is shorter than what layer {layer} of "
                    f"{net.name} reads ({needed} samples, "
                    f"{needed / net.sample_rate:.3f} s)")
  maps = np.asarray(maps)
  count = objective.width(net, layer)
  if maps.ndim != 1 or maps.size == 0 or not np.issubdtype(maps.dtype,
                                                           np.integer):
    raise UserError(f"maps must be a non-empty list of ints, got {maps!r}")
  bad = maps[(maps < 0) | (maps >= count)]
  if bad.size:
    raise UserError(f"map(s) {bad.tolist()} out of range: layer {layer} has "
                    f"maps 0..{count - 1}")
  padded = padded_length(net, length, settings)
  if scale is None:
    scale = parametrize.one_over_f_scale(padded, net.sample_rate)
  scale = np.asarray(scale, np.float32)
  if scale.shape != (padded // 2 + 1,):
    raise UserError(f"scale must have {padded // 2 + 1} entries for "
                    f"{padded} samples, got shape {scale.shape}")
  params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
  keys = jax.vmap(lambda m: jax.random.fold_in(key, m))(jnp.asarray(maps))
  per_map = 3 * deconvnet.trace_bytes(
      net, net.head.block if layer == objective.HEAD else layer, padded)
  chunk = (budget.maps_per_chunk(per_map, maps.size, budget_bytes)
           * over_devices.device_count())
  parts = []
  for start in range(0, maps.size, chunk):
    parts.append(over_devices.rows(
        _optimise, (params, jnp.asarray(scale)),
        (keys[start:start + chunk], jnp.asarray(maps[start:start + chunk])),
        net=net, layer=layer, length=length, settings=settings))
  waveforms, activation, start, history = (
      np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(4))
  return Visualization(maps, waveforms, activation, start, history)


def padded_length(net: network_lib.Network, length: int,
                  settings: Settings) -> int:
  """Samples of the optimised waveform: the output and the jitter each way."""
  return length + 2 * settings.jitter(net.sample_rate)


def _optimise(params: Params, scale: jax.Array, keys: jax.Array,
              maps: jax.Array, *, net: network_lib.Network,
              layer: objective.Layer, length: int, settings: Settings):
  """Row-wise over ``keys``/``maps``: ``(waveforms, activation, start,
  history)`` (see :class:`Visualization`)."""
  drive = objective.of(net, layer, settings.where)
  padded = padded_length(net, length, settings)
  optimiser = optax.adamw(settings.learning_rate,
                          weight_decay=settings.weight_decay)

  def wave(coefficients):
    return parametrize.waveform(coefficients, scale, padded, settings.rms)

  def loss(coefficients, key, m):
    x = transforms.jitter_gain_noise(wave(coefficients), key, length,
                                     settings.gain_db, settings.noise,
                                     settings.rms)
    achieved = drive(params, x)[m]
    beyond = jnp.mean(jax.nn.relu(jnp.abs(x) - 1.0) ** 2)
    return -achieved + settings.clip_penalty * beyond, achieved

  def one_map(key, m):
    init_key, steps_key = jax.random.split(key)
    coefficients = parametrize.init_coefficients(init_key, padded,
                                                   settings.init_std)

    def step(state, step_key):
      coefficients, opt_state = state
      grads, achieved = jax.grad(loss, has_aux=True)(coefficients, step_key,
                                                     m)
      updates, opt_state = optimiser.update(grads, opt_state,
                                             coefficients)
      return (optax.apply_updates(coefficients, updates), opt_state), achieved

    start = drive(params, transforms.centre(wave(coefficients), length))[m]
    (coefficients, _), history = jax.lax.scan(
        step, (coefficients, optimiser.init(coefficients)),
        jax.random.split(steps_key, settings.steps))
    x = transforms.centre(wave(coefficients), length)
    return x, drive(params, x)[m], start, history

  return jax.vmap(one_map)(keys, maps)
