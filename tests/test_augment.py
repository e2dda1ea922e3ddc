"""Statistics and properties of the waveform augmentations."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from sonify_jax.data import augment

# Everything runs jit'd: one XLA compile per function instead of one per op.
_random_gain = jax.jit(augment.random_gain, static_argnames=("gain_db", "p"))
_draw_gain = jax.jit(augment.draw_gain, static_argnums=1)
_apply_gain = jax.jit(augment.apply_gain)
_draw_noise = jax.jit(augment.draw_noise, static_argnums=1)
_apply_noise = jax.jit(augment.apply_noise)
_add_noise = jax.jit(augment.add_noise, static_argnames=("noise_range", "p"))
_draw_masks = jax.jit(augment.draw_time_masks, static_argnums=(1, 2, 3, 4))
_apply_masks = jax.jit(augment.apply_time_masks)
_time_masks = jax.jit(augment.time_masks, static_argnums=(2, 3))
_draw_mix = jax.jit(augment.draw_mix, static_argnums=1)
_apply_mix = jax.jit(augment.apply_mix)
_mix_background = jax.jit(augment.mix_background,
                          static_argnames=("snr_db", "p"))
_augment = jax.jit(augment.augment_batch, static_argnames="config")
_draw_params = jax.jit(augment.draw_augment_params, static_argnums=(1, 2, 3))
_keep_mask = jax.jit(augment.keep_mask, static_argnums=1)
_normal = jax.jit(jax.random.normal, static_argnums=1)

# Binomial tolerance: 5 standard deviations of a fraction over n draws.
def _binomial_tol(p, n):
  return 5 * np.sqrt(p * (1 - p) / n)


def _signal(batch, length, seed=0):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.normal(0, 0.1, (batch, length)), jnp.float32)


# ----------------------------------------------------------------------- gain
def test_gain_realised_ratio_in_range_and_probability():
  n = 4000
  audio = _signal(n, 32)
  out = np.asarray(_random_gain(jax.random.key(1), audio))
  # Realised gain from the waveforms themselves (not from the drawn params).
  ratio_db = 20 * np.log10(np.abs(out[:, 0]) / np.abs(np.asarray(audio)[:, 0]))
  changed = np.abs(ratio_db) > 1e-3
  assert abs(changed.mean() - 0.5) < _binomial_tol(0.5, n)
  assert ratio_db[changed].min() >= -18 - 1e-3
  assert ratio_db[changed].max() <= 6 + 1e-3
  # The same factor over the whole clip (a gain, not a distortion).
  ratios = out / np.asarray(audio)
  np.testing.assert_allclose(ratios, np.broadcast_to(ratios[:, :1], ratios.shape),
                             rtol=1e-4)
  # Uniform in dB over [-18, 6].
  ks = stats.kstest(ratio_db[changed], stats.uniform(-18, 24).cdf)
  assert ks.pvalue > 1e-3


def test_gain_params_match_realised_gain():
  audio = _signal(64, 16)
  params = _draw_gain(jax.random.key(2), 64)
  out = _apply_gain(audio, params)
  expected = np.where(params.apply, 10 ** (np.asarray(params.gain_db) / 20), 1)
  np.testing.assert_allclose(np.asarray(out),
                             np.asarray(audio) * expected[:, None], rtol=1e-5)
  # Independent draws per example.
  assert len(np.unique(np.asarray(params.gain_db))) == 64


# ---------------------------------------------------------------------- noise
def test_noise_std_matches_drawn_magnitude_and_probability():
  n, t = 2000, 4000
  zeros = jnp.zeros((n, t), jnp.float32)
  params = _draw_noise(jax.random.key(3), n)
  out = np.asarray(_apply_noise(zeros, params))
  realised = out.std(axis=1)
  applied = np.asarray(params.apply)
  assert abs(applied.mean() - 0.5) < _binomial_tol(0.5, n)
  assert np.all(realised[~applied] == 0)
  drawn = np.asarray(params.std)[applied]
  # Sample std of t Gaussian samples has relative error ~ 1/sqrt(2t) = 1.1%.
  np.testing.assert_allclose(realised[applied], drawn, rtol=6 / np.sqrt(2 * t))
  assert drawn.min() >= 0.001 and drawn.max() <= 0.015
  assert stats.kstest(drawn, stats.uniform(0.001, 0.014).cdf).pvalue > 1e-3
  # Gaussian, zero mean: excess kurtosis ~ 0.
  z = out[applied] / drawn[:, None]
  assert abs(z.mean()) < 0.01
  assert abs(stats.kurtosis(z.ravel())) < 0.05


def test_add_noise_probability_over_many_draws():
  n = 4000
  out = np.asarray(_add_noise(jax.random.key(4),
                                     jnp.zeros((n, 8)), p=0.2))
  noisy = np.any(out != 0, axis=1)
  assert abs(noisy.mean() - 0.2) < _binomial_tol(0.2, n)


# ---------------------------------------------------------------- time masks
def _zero_runs(row):
  """(start, length) of each run of zeros in a 1-D array."""
  z = np.concatenate([[0], (row == 0).astype(int), [0]])
  d = np.diff(z)
  starts, ends = np.nonzero(d == 1)[0], np.nonzero(d == -1)[0]
  return list(zip(starts, ends - starts))


def test_time_masks_bounds_and_count():
  n, t, max_len = 600, 12000, 4000
  ones = jnp.ones((n, t), jnp.float32)
  params = _draw_masks(jax.random.key(5), n, t, 2, max_len)
  out = np.asarray(_apply_masks(ones, params))
  count = np.asarray(params.count)
  starts, lengths = np.asarray(params.starts), np.asarray(params.lengths)
  assert count.min() >= 0 and count.max() <= 2
  # Count uniform over {0, 1, 2}.
  freq = np.bincount(count, minlength=3) / n
  np.testing.assert_allclose(freq, 1 / 3, atol=_binomial_tol(1 / 3, n))
  assert lengths.min() >= 0 and lengths.max() <= max_len
  assert np.all(starts >= 0) and np.all(starts + lengths <= t)
  for i in range(n):
    # Independent re-derivation of the zeroed set from the drawn spans.
    expected = np.ones(t, np.float32)
    for m in range(count[i]):
      expected[starts[i, m]:starts[i, m] + lengths[i, m]] = 0
    np.testing.assert_array_equal(out[i], expected)
    runs = _zero_runs(out[i])
    assert len(runs) <= 2
    assert sum(r[1] for r in runs) <= 2 * max_len
  # Lengths uniform in 0..max_len.
  used = lengths[np.arange(2)[None, :] < count[:, None]]
  assert abs(used.mean() - max_len / 2) < 5 * max_len / np.sqrt(12 * used.size)


def test_time_masks_on_clip_shorter_than_a_mask():
  ones = jnp.ones((50, 100))
  out = np.asarray(_time_masks(jax.random.key(6), ones, 2, 4000))
  assert out.shape == (50, 100)
  assert np.all((out == 0) | (out == 1))
  assert (out == 0).any()  # spans are capped at T, not dropped


def test_default_mask_length_is_half_a_second_at_8khz():
  config = augment.AugmentConfig()
  assert config.max_mask_samples == 4000


# ------------------------------------------------------------ background mix
def test_mix_realised_snr_equals_drawn_snr():
  n, t = 512, 2000
  rng = np.random.default_rng(7)
  # Signals and backgrounds of very different levels and spectra.
  signal = rng.normal(0, 1, (n, t)) * 10 ** rng.uniform(-3, 0, (n, 1))
  background = np.sin(np.arange(t) * rng.uniform(0.01, 1, (n, 1))) * \
      10 ** rng.uniform(-3, 0, (n, 1))
  signal = jnp.asarray(signal, jnp.float32)
  background = jnp.asarray(background, jnp.float32)
  params = _draw_mix(jax.random.key(8), n)
  out = _apply_mix(signal, background, params)
  added = np.asarray(out, np.float64) - np.asarray(signal, np.float64)
  applied = np.asarray(params.apply)
  assert np.all(added[~applied] == 0)
  p_sig = np.mean(np.asarray(signal, np.float64) ** 2, axis=1)
  p_bg = np.mean(added ** 2, axis=1)
  realised = 10 * np.log10(p_sig[applied] / p_bg[applied])
  drawn = np.asarray(params.snr_db)[applied]
  np.testing.assert_allclose(realised, drawn, atol=0.1)
  assert drawn.min() >= 10 and drawn.max() <= 25
  assert abs(applied.mean() - 0.5) < _binomial_tol(0.5, n)
  # The added part is the background itself, scaled.
  corr = [np.corrcoef(added[i], np.asarray(background)[i])[0, 1]
          for i in np.nonzero(applied)[0][:20]]
  np.testing.assert_allclose(corr, 1.0, atol=1e-4)


def test_mix_silent_clips_stay_finite_and_unchanged():
  signal = jnp.stack([jnp.zeros(100), jnp.ones(100), jnp.zeros(100)])
  background = jnp.stack([jnp.ones(100), jnp.zeros(100), jnp.zeros(100)])
  params = augment.MixParams(jnp.array([True] * 3), jnp.array([10.] * 3))
  out = np.asarray(_apply_mix(signal, background, params))
  assert np.all(np.isfinite(out))
  np.testing.assert_array_equal(out, np.asarray(signal))
  # Through augment_batch too (default background = batch rolled by one).
  full = _augment(jax.random.key(0), jnp.zeros((16, 6000)),
                  config=augment.AugmentConfig())
  assert np.all(np.isfinite(np.asarray(full)))


def test_mix_default_background_is_the_rolled_batch():
  audio = _signal(4, 300)
  key = jax.random.key(9)
  a = _mix_background(key, audio, p=1.0)
  b = _mix_background(key, audio, jnp.roll(audio, 1, axis=0), p=1.0)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ------------------------------------------------------------- augment_batch
def _manual(key, audio, config):
  """Independent re-composition in numpy from the drawn parameters."""
  # The draws do not depend on the switches (see the next test).
  p = _draw_params(key, audio.shape[0], audio.shape[1],
                   augment.AugmentConfig())
  x = np.asarray(audio, np.float64)
  if config.use_mix:
    bg = np.roll(x, 1, axis=0)
    p_sig, p_bg = (x ** 2).mean(1), (bg ** 2).mean(1)
    scale = np.sqrt(p_sig / p_bg / 10 ** (np.asarray(p.mix.snr_db) / 10))
    x = x + np.where(p.mix.apply, scale, 0)[:, None] * bg
  if config.use_gain:
    x = x * np.where(p.gain.apply, 10 ** (np.asarray(p.gain.gain_db) / 20),
                     1)[:, None]
  if config.use_noise:
    noise = np.asarray(_normal(p.noise.key, x.shape))
    x = x + np.where(p.noise.apply, p.noise.std, 0)[:, None] * noise
  if config.use_masks:
    for i in range(x.shape[0]):
      for m in range(int(p.masks.count[i])):
        s, l = int(p.masks.starts[i, m]), int(p.masks.lengths[i, m])
        x[i, s:s + l] = 0
  return x


@pytest.mark.parametrize("switches", [
    dict(), dict(use_mix=False, use_noise=False),
    dict(use_gain=False, use_masks=False)])
def test_augment_batch_composition_and_switches(switches):
  config = augment.AugmentConfig(**switches)
  audio = _signal(16, 6000)
  key = jax.random.key(10)
  out = np.asarray(_augment(key, audio, config=config))
  np.testing.assert_allclose(out, _manual(key, audio, config), atol=1e-5)


def test_augment_batch_all_off_is_identity():
  config = augment.AugmentConfig(use_gain=False, use_noise=False,
                                 use_masks=False, use_mix=False)
  audio = _signal(4, 500)
  out = _augment(jax.random.key(0), audio, config=config)
  np.testing.assert_array_equal(np.asarray(out), np.asarray(audio))


def test_augment_batch_deterministic_and_jit_equals_eager():
  audio = _signal(16, 6000)
  fn = augment.make_augment_fn(augment.AugmentConfig())
  a = np.asarray(fn(jax.random.key(11), audio))
  b = np.asarray(fn(jax.random.key(11), audio))
  c = np.asarray(fn(jax.random.key(12), audio))
  np.testing.assert_array_equal(a, b)
  # The jit'd function with config bound equals the static-arg jit.
  np.testing.assert_array_equal(
      a, np.asarray(_augment(jax.random.key(11), audio,
                             config=augment.AugmentConfig())))
  assert not np.allclose(a, c)


def test_switching_one_off_keeps_the_other_draws():
  audio = _signal(16, 6000)
  key = jax.random.key(13)
  only_masks = augment.AugmentConfig(use_gain=False, use_noise=False,
                                     use_mix=False)
  out = np.asarray(_augment(key, audio, config=only_masks))
  params = _draw_params(key, 16, 6000, augment.AugmentConfig())
  keep = np.asarray(_keep_mask(params.masks, 6000))
  np.testing.assert_array_equal(out, np.asarray(audio) * keep)


def test_config_from_dict_and_validation():
  config = augment.AugmentConfig.from_dict(
      {"gain_db": [-6, 0], "use_mix": False, "max_time_masks": 1})
  assert config.gain_db == (-6.0, 0.0) and not config.use_mix
  hash(config)  # static-arg friendly
  assert augment.AugmentConfig.from_dict(config.to_dict()) == config
  assert augment.AugmentConfig.from_dict(None) == augment.AugmentConfig()
  with pytest.raises(ValueError, match="unknown"):
    augment.AugmentConfig.from_dict({"gain": 1})
  with pytest.raises(ValueError, match="gain_p"):
    augment.AugmentConfig(gain_p=1.5)
  with pytest.raises(ValueError, match="low <= high"):
    augment.AugmentConfig(mix_snr_db=(25, 10))
  with pytest.raises(ValueError, match=r"\[batch, time\]"):
    augment.augment_batch(jax.random.key(0), jnp.zeros(100))
  with pytest.raises(ValueError, match="background"):
    augment.mix_background(jax.random.key(0), jnp.zeros((2, 10)),
                           jnp.zeros((2, 11)))


def test_config_from_config_dict():
  ml_collections = pytest.importorskip("ml_collections")
  d = ml_collections.ConfigDict(dataclasses.asdict(augment.AugmentConfig()))
  d.noise_p = 0.25
  assert augment.AugmentConfig.from_dict(d).noise_p == 0.25


# ---------------------------------------------------------------------- mixup
@jax.jit
def _mixup_with_params(key, audio, labels):
  # One compile (the Beta sampler is costly to compile); XLA shares the draws.
  return (augment.mixup(key, audio, labels, 0.4),
          augment.draw_mixup(key, audio.shape[0], 0.4))


def test_mixup_mixes_audio_and_labels_alike_with_beta_lambda():
  n, c, t, alpha = 4096, 8, 16, 0.4
  rng = np.random.default_rng(14)
  labels = np.eye(c, dtype=np.float32)[rng.integers(0, c, n)]
  weights = rng.normal(size=(c, t)).astype(np.float32)
  # Audio linear in the labels: mixing both alike keeps audio = labels @ W.
  audio = labels @ weights
  (out_audio, out_labels), params = _mixup_with_params(
      jax.random.key(14), jnp.asarray(audio), jnp.asarray(labels))
  out_audio, out_labels = np.asarray(out_audio), np.asarray(out_labels)
  np.testing.assert_allclose(out_audio, out_labels @ weights, atol=1e-4)
  np.testing.assert_allclose(out_labels.sum(1), 1.0, atol=1e-5)
  lam, perm = np.asarray(params.lam), np.asarray(params.perm)
  assert sorted(perm) == list(range(n))
  np.testing.assert_allclose(
      out_audio, lam[:, None] * audio + (1 - lam[:, None]) * audio[perm],
      atol=1e-5)
  assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
  assert np.mean(perm == np.arange(n)) < 0.01  # partners are other clips


def test_mixup_alpha_zero_is_identity_and_validation():
  audio, labels = _signal(4, 10), jnp.eye(4)
  a, l = augment.mixup(jax.random.key(0), audio, labels, 0.0)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(audio))
  np.testing.assert_array_equal(np.asarray(l), np.asarray(labels))
  with pytest.raises(ValueError, match="float"):
    augment.mixup(jax.random.key(0), audio, jnp.arange(4), 0.2)
  with pytest.raises(ValueError, match="labels"):
    augment.mixup(jax.random.key(0), audio, jnp.ones((3, 4)), 0.2)
