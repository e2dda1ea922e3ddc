"""Waveform augmentations for SimCLR and supervised training (pure JAX).

Every augmentation is a pure, jit-able function of a PRNG key and a batch of
waveforms ``[B, T]`` (8 kHz, float32) and draws its random parameters
independently for each example. Each one comes in three pieces:

* ``draw_<aug>(key, batch_size, ...) -> <Aug>Params``: the random draw alone,
  so tests and analyses can see exactly what was drawn;
* ``apply_<aug>(audio, params, ...)``: deterministic given the params;
* ``<aug>(key, audio, ...)``: the two composed (``random_gain``,
  ``add_noise``, ``time_masks``, ``mix_background``).

``augment_batch`` composes the four SimCLR augmentations in a fixed order --
background mix, gain, noise, time masks -- so that the SNR is relative to the
clean clip, the noise magnitude is absolute (relative to full scale, after the
gain) and masked spans are true silence. Each augmentation uses its own fixed
sub-key, so switching one off (for ablations) leaves the others' draws
unchanged.

Inputs are assumed finite; ``sonify_jax.data.pipeline`` replaces NaN/Inf
samples before they get here (a jit'd function cannot raise on values).
"""
import dataclasses
import functools
from typing import Any, Callable, Mapping, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from sonify_jax.data.sources import SAMPLE_RATE

# Mean-square power below which a clip counts as silent: mixing at a given SNR
# is undefined for it, so the mix is skipped instead of producing inf/NaN.
SILENCE_POWER = 1e-10


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Parameters of the SimCLR augmentations (hashable: usable as a static arg).

  Attributes:
    gain_db: (low, high) range of the random gain in dB.
    gain_p: probability that an example gets a gain.
    noise_range: (low, high) range of the additive Gaussian noise std
      (relative to full scale 1.0).
    noise_p: probability that an example gets noise.
    max_time_masks: the number of masks is uniform in ``0..max_time_masks``.
    max_mask_seconds: each mask's length is uniform in
      ``0..round(max_mask_seconds * sample_rate)`` samples.
    mix_snr_db: (low, high) range of the signal-to-background ratio in dB.
    mix_p: probability that an example is mixed with a background clip.
    use_gain, use_noise, use_masks, use_mix: switch each augmentation on/off.
    sample_rate: samples per second of the waveforms.
  """
  gain_db: Tuple[float, float] = (-18., 6.)
  gain_p: float = 0.5
  noise_range: Tuple[float, float] = (0.001, 0.015)
  noise_p: float = 0.5
  max_time_masks: int = 2
  max_mask_seconds: float = 0.5
  mix_snr_db: Tuple[float, float] = (10., 25.)
  mix_p: float = 0.5
  use_gain: bool = True
  use_noise: bool = True
  use_masks: bool = True
  use_mix: bool = True
  sample_rate: int = SAMPLE_RATE

  def __post_init__(self):
    for name in ("gain_db", "noise_range", "mix_snr_db"):
      value = tuple(float(v) for v in getattr(self, name))
      if len(value) != 2 or not value[0] <= value[1]:
        raise ValueError(f"{name} must be (low, high) with low <= high, "
                         f"got {getattr(self, name)!r}")
      object.__setattr__(self, name, value)
    for name in ("gain_p", "noise_p", "mix_p"):
      if not 0.0 <= float(getattr(self, name)) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got "
                         f"{getattr(self, name)!r}")
    if self.noise_range[0] < 0:
      raise ValueError(f"noise_range must be >= 0, got {self.noise_range}")
    if int(self.max_time_masks) != self.max_time_masks or \
        self.max_time_masks < 0:
      raise ValueError(f"max_time_masks must be an int >= 0, got "
                       f"{self.max_time_masks!r}")
    if self.max_mask_seconds < 0:
      raise ValueError(f"max_mask_seconds must be >= 0, got "
                       f"{self.max_mask_seconds!r}")
    if self.sample_rate <= 0:
      raise ValueError(f"sample_rate must be > 0, got {self.sample_rate!r}")

  @property
  def max_mask_samples(self) -> int:
    return int(round(self.max_mask_seconds * self.sample_rate))

  @classmethod
  def from_dict(cls, d: Optional[Mapping[str, Any]]) -> "AugmentConfig":
    """From a dict or ml_collections.ConfigDict; unknown keys are an error."""
    if d is None:
      return cls()
    if hasattr(d, "to_dict"):
      d = d.to_dict()
    d = dict(d)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
      raise ValueError(f"unknown augmentation settings {unknown}; "
                       f"known: {sorted(known)}")
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return cls(**d)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _check_audio(audio: jax.Array) -> None:
  if audio.ndim != 2:
    raise ValueError(f"audio must be [batch, time], got shape {audio.shape}")


# One uniform draw of [B, k] per augmentation, split into its k parameters:
# every PRNG call costs compile time, so the draws share one.
def _coin_and_value(key: jax.Array, batch_size: int, p: float,
                    low_high: Tuple[float, float]
                    ) -> Tuple[jax.Array, jax.Array]:
  """(bool [B] with P(True) = p, float [B] uniform in low_high)."""
  u = jax.random.uniform(key, (batch_size, 2))
  low, high = low_high
  return u[:, 0] < p, low + (high - low) * u[:, 1]


def _uniform_int(u: jax.Array, n) -> jax.Array:
  """Integers uniform in ``0..n-1`` from uniforms ``u`` in [0, 1); ``n`` may
  be an array (per-element bound)."""
  return jnp.minimum(jnp.floor(u * n).astype(jnp.int32), n - 1)


def power(audio: jax.Array) -> jax.Array:
  """Mean-square power of each example: ``[B, T] -> [B]``."""
  return jnp.mean(jnp.square(audio), axis=-1)


# ---------------------------------------------------------------- random gain
class GainParams(NamedTuple):
  apply: jax.Array    # bool [B]
  gain_db: jax.Array  # float [B]; only meaningful where apply


def draw_gain(key: jax.Array, batch_size: int,
              gain_db: Tuple[float, float] = (-18., 6.),
              p: float = 0.5) -> GainParams:
  return GainParams(*_coin_and_value(key, batch_size, p, gain_db))


def apply_gain(audio: jax.Array, params: GainParams) -> jax.Array:
  """``[B, T] -> [B, T]``: scales example i by 10^(gain_db[i] / 20)."""
  _check_audio(audio)
  factor = jnp.where(params.apply, 10.0 ** (params.gain_db / 20.0), 1.0)
  return audio * factor[:, None].astype(audio.dtype)


def random_gain(key: jax.Array, audio: jax.Array,
                gain_db: Tuple[float, float] = (-18., 6.),
                p: float = 0.5) -> jax.Array:
  """Random gain uniform in ``gain_db`` dB with probability ``p``; [B, T]."""
  _check_audio(audio)
  return apply_gain(audio, draw_gain(key, audio.shape[0], gain_db, p))


# ------------------------------------------------------------- additive noise
class NoiseParams(NamedTuple):
  apply: jax.Array  # bool [B]
  std: jax.Array    # float [B]: the noise's standard deviation ("magnitude")
  key: jax.Array    # PRNG key of the Gaussian samples


def draw_noise(key: jax.Array, batch_size: int,
               noise_range: Tuple[float, float] = (0.001, 0.015),
               p: float = 0.5) -> NoiseParams:
  k_draw, k_noise = jax.random.split(key)
  return NoiseParams(*_coin_and_value(k_draw, batch_size, p, noise_range),
                     k_noise)


def apply_noise(audio: jax.Array, params: NoiseParams) -> jax.Array:
  """``[B, T] -> [B, T]``: adds N(0, std[i]^2) white noise to example i."""
  _check_audio(audio)
  std = jnp.where(params.apply, params.std, 0.0).astype(audio.dtype)
  noise = jax.random.normal(params.key, audio.shape, audio.dtype)
  return audio + std[:, None] * noise


def add_noise(key: jax.Array, audio: jax.Array,
              noise_range: Tuple[float, float] = (0.001, 0.015),
              p: float = 0.5) -> jax.Array:
  """Gaussian noise with std uniform in ``noise_range`` (prob. ``p``); [B, T]."""
  _check_audio(audio)
  return apply_noise(audio, draw_noise(key, audio.shape[0], noise_range, p))


# ----------------------------------------------------------------- time masks
class MaskParams(NamedTuple):
  count: jax.Array    # int32 [B], uniform in 0..max_masks
  starts: jax.Array   # int32 [B, max_masks]
  lengths: jax.Array  # int32 [B, max_masks], uniform in 0..max_mask_samples
                      # (capped at T); mask m is used iff m < count


def draw_time_masks(key: jax.Array, batch_size: int, num_samples: int,
                    max_masks: int = 2, max_mask_samples: int = 4000
                    ) -> MaskParams:
  """Mask count, starts and lengths; every mask lies inside ``[0, T)``."""
  max_len = min(int(max_mask_samples), int(num_samples))
  u = jax.random.uniform(key, (batch_size, 1 + 2 * max_masks))
  count = _uniform_int(u[:, 0], max_masks + 1)
  lengths = _uniform_int(u[:, 1:1 + max_masks], max_len + 1)
  starts = _uniform_int(u[:, 1 + max_masks:], num_samples - lengths + 1)
  return MaskParams(count, starts, lengths)


def keep_mask(params: MaskParams, num_samples: int) -> jax.Array:
  """``[B, T]`` of 1.0 where a sample survives the masks, 0.0 where masked."""
  t = jnp.arange(num_samples)[None, None, :]
  used = (jnp.arange(params.starts.shape[1])[None, :]
          < params.count[:, None])[..., None]
  inside = (t >= params.starts[..., None]) & (
      t < (params.starts + params.lengths)[..., None])
  return 1.0 - jnp.any(used & inside, axis=1).astype(jnp.float32)


def apply_time_masks(audio: jax.Array, params: MaskParams) -> jax.Array:
  """``[B, T] -> [B, T]`` with the masked spans zeroed."""
  _check_audio(audio)
  return audio * keep_mask(params, audio.shape[1]).astype(audio.dtype)


def time_masks(key: jax.Array, audio: jax.Array, max_masks: int = 2,
               max_mask_samples: int = 4000) -> jax.Array:
  """Zero up to ``max_masks`` spans of at most ``max_mask_samples``; [B, T]."""
  _check_audio(audio)
  params = draw_time_masks(key, audio.shape[0], audio.shape[1], max_masks,
                           max_mask_samples)
  return apply_time_masks(audio, params)


# --------------------------------------------------------- background mixing
class MixParams(NamedTuple):
  apply: jax.Array   # bool [B]
  snr_db: jax.Array  # float [B]: 10 log10(P_signal / P_background_scaled)


def draw_mix(key: jax.Array, batch_size: int,
             snr_db: Tuple[float, float] = (10., 25.),
             p: float = 0.5) -> MixParams:
  return MixParams(*_coin_and_value(key, batch_size, p, snr_db))


def background_scale(signal: jax.Array, background: jax.Array,
                     snr_db: jax.Array) -> jax.Array:
  """Per-example factor ``[B]`` that puts ``background`` at ``snr_db``.

  ``10 log10(P(signal) / P(scale * background)) == snr_db`` exactly; the
  factor is 0 where either clip is silent (power < SILENCE_POWER), where no
  scale can reach the SNR.
  """
  p_sig, p_bg = power(signal), power(background)
  ok = (p_sig > SILENCE_POWER) & (p_bg > SILENCE_POWER)
  ratio = p_sig / jnp.where(ok, p_bg, 1.0) * 10.0 ** (-snr_db / 10.0)
  return jnp.where(ok, jnp.sqrt(ratio), 0.0)


def apply_mix(audio: jax.Array, background: jax.Array,
              params: MixParams) -> jax.Array:
  """``audio + scale * background`` for the examples that mix; [B, T]."""
  _check_audio(audio)
  if background.shape != audio.shape:
    raise ValueError(f"background {background.shape} must match audio "
                     f"{audio.shape}")
  scale = background_scale(audio, background, params.snr_db)
  scale = jnp.where(params.apply, scale, 0.0).astype(audio.dtype)
  return audio + scale[:, None] * background


def default_background(audio: jax.Array) -> jax.Array:
  """Each example's background is the next clip of the batch (roll by one)."""
  return jnp.roll(audio, 1, axis=0)


def mix_background(key: jax.Array, audio: jax.Array,
                   background: Optional[jax.Array] = None,
                   snr_db: Tuple[float, float] = (10., 25.),
                   p: float = 0.5) -> jax.Array:
  """Mix each clip with ``background`` (default: the batch rolled by one) at
  an SNR uniform in ``snr_db`` dB with probability ``p``; [B, T]."""
  _check_audio(audio)
  if background is None:
    background = default_background(audio)
  return apply_mix(audio, background,
                   draw_mix(key, audio.shape[0], snr_db, p))


# ---------------------------------------------------------------- composition
class AugmentParams(NamedTuple):
  mix: MixParams
  gain: GainParams
  noise: NoiseParams
  masks: MaskParams


def draw_augment_params(key: jax.Array, batch_size: int, num_samples: int,
                        config: AugmentConfig) -> AugmentParams:
  """All draws of ``augment_batch`` (drawn even for switched-off parts)."""
  k_mix, k_gain, k_noise, k_mask = jax.random.split(key, 4)
  return AugmentParams(
      mix=draw_mix(k_mix, batch_size, config.mix_snr_db, config.mix_p),
      gain=draw_gain(k_gain, batch_size, config.gain_db, config.gain_p),
      noise=draw_noise(k_noise, batch_size, config.noise_range,
                       config.noise_p),
      masks=draw_time_masks(k_mask, batch_size, num_samples,
                            config.max_time_masks, config.max_mask_samples))


def apply_augment(audio: jax.Array, params: AugmentParams,
                  config: AugmentConfig,
                  background: Optional[jax.Array] = None) -> jax.Array:
  """Mix -> gain -> noise -> masks, each only if switched on; [B, T]."""
  _check_audio(audio)
  if config.use_mix:
    if background is None:
      background = default_background(audio)
    audio = apply_mix(audio, background, params.mix)
  if config.use_gain:
    audio = apply_gain(audio, params.gain)
  if config.use_noise:
    audio = apply_noise(audio, params.noise)
  if config.use_masks and config.max_time_masks > 0:
    audio = apply_time_masks(audio, params.masks)
  return audio


def augment_batch(key: jax.Array, audio: jax.Array,
                  config: AugmentConfig = AugmentConfig(),
                  background: Optional[jax.Array] = None) -> jax.Array:
  """The SimCLR augmentation of a batch of crops.

  Args:
    key: PRNG key; each example gets independent draws.
    audio: float ``[B, T]`` waveforms.
    config: AugmentConfig (static under jit: ``jax.jit(augment_batch,
      static_argnames='config')`` or ``make_augment_fn(config)``).
    background: optional ``[B, T]`` clips to mix in; default the batch rolled
      by one (so with B == 1 a clip is mixed with itself).

  Returns:
    float ``[B, T]`` augmented waveforms.
  """
  _check_audio(audio)
  params = draw_augment_params(key, audio.shape[0], audio.shape[1], config)
  return apply_augment(audio, params, config, background)


def make_augment_fn(config: AugmentConfig = AugmentConfig()
                    ) -> Callable[..., jax.Array]:
  """``jit(augment_batch)`` with ``config`` bound: ``fn(key, audio[, bg])``."""
  return jax.jit(functools.partial(augment_batch, config=config))


# ---------------------------------------------------------------------- mixup
class MixupParams(NamedTuple):
  lam: jax.Array   # float [B], Beta(alpha, alpha)
  perm: jax.Array  # int32 [B], the partner of each example


def draw_mixup(key: jax.Array, batch_size: int, alpha: float) -> MixupParams:
  k_lam, k_perm = jax.random.split(key)
  lam = jax.random.beta(k_lam, alpha, alpha, (batch_size,))
  perm = jax.random.permutation(k_perm, batch_size)
  return MixupParams(lam, perm.astype(jnp.int32))


def apply_mixup(audio: jax.Array, labels: jax.Array, params: MixupParams
                ) -> Tuple[jax.Array, jax.Array]:
  """``x_i <- lam_i x_i + (1 - lam_i) x_perm(i)``, labels mixed alike."""
  def mix(x):
    lam = params.lam.reshape((-1,) + (1,) * (x.ndim - 1)).astype(x.dtype)
    return lam * x + (1 - lam) * x[params.perm]
  return mix(audio), mix(labels)


def mixup(key: jax.Array, audio: jax.Array, labels: jax.Array,
          alpha: float) -> Tuple[jax.Array, jax.Array]:
  """Mixup (Zhang et al. 2018) with a per-example Beta(alpha, alpha) weight.

  Args:
    key: PRNG key.
    audio: float ``[B, T]`` (or ``[B, ...]``) waveforms.
    labels: float ``[B, C]`` one-hot or multi-hot labels (convert int labels
      with ``jax.nn.one_hot`` first).
    alpha: Beta parameter; ``alpha <= 0`` disables mixup (identity).

  Returns:
    (mixed audio, mixed labels), the shapes of the inputs.
  """
  if audio.ndim < 2:
    raise ValueError(f"audio must be [batch, time], got shape {audio.shape}")
  if labels.ndim != 2 or labels.shape[0] != audio.shape[0]:
    raise ValueError(f"labels must be float [batch, classes] matching audio "
                     f"{audio.shape}, got {labels.shape}")
  if not jnp.issubdtype(labels.dtype, jnp.floating):
    raise ValueError("labels must be float one-/multi-hot [batch, classes]; "
                     f"got dtype {labels.dtype}")
  if alpha <= 0:
    return audio, labels
  return apply_mixup(audio, labels, draw_mixup(key, audio.shape[0], alpha))
