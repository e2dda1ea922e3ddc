"""Linear probe: how much class information a frozen encoder's features hold.

Two pieces, kept apart so the measurement is a pure function:

* :func:`encoder_features` -- frozen whole-clip features of an encoder
  over a ClipSource: the masked temporal mean of one block's output
  (``Encoder.pooled_features``, the same whole-clip pooling the classifier
  uses), one row per readable clip, in source order;
* :func:`linear_probe` -- features in, accuracy out: standardised features,
  multinomial logistic regression (scikit-learn), the inverse regularisation
  ``C`` chosen on a validation set (a given one, e.g. the embedded data's
  grouped 'validation' split, else a stratified holdout of the train
  features), refitted on train + validation with that ``C``, and scored once
  on test. The
  majority-class baseline (the most frequent train class predicted for every
  test clip) comes with it.

The usual control is the same architecture's untrained init (same seed):
``probe_encoder`` on both and compare.
"""
import dataclasses
import functools
from typing import Any, Dict, Optional, Sequence, Tuple

import jax
import numpy as np

from sonify_jax.data import pipeline
from sonify_jax.data.sources import ClipSource
from sonify_jax.models.registry import get_network
from sonify_jax.models.encoder import Encoder
from sonify_jax.train import evaluate

# Inverse L2 strengths tried on the validation holdout (log-spaced).
DEFAULT_CS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


@dataclasses.dataclass(frozen=True)
class ProbeResult:
  """What :func:`linear_probe` measured.

  Attributes:
    accuracy: test accuracy of the probe refitted on all train features.
    majority: test accuracy of always predicting the most frequent train
      class.
    c: the chosen inverse regularisation strength.
    val_accuracy: the holdout accuracy that chose ``c``.
    num_train, num_test: clips on each side.
  """
  accuracy: float
  majority: float
  c: float
  val_accuracy: float
  num_train: int
  num_test: int

  def to_dict(self) -> Dict[str, float]:
    return dataclasses.asdict(self)


@functools.lru_cache(maxsize=16)
def _features_fn(arch_name: str, block: int):
  encoder = Encoder(net=get_network(arch_name), dropout_rate=0.0)

  @jax.jit
  def features(params, audio, mask):
    return encoder.apply({"params": params}, audio, block, mask,
                         method=Encoder.pooled_features)

  return features


def encoder_features(params: Any, arch_name: str, source: ClipSource, *,
                     block: Optional[int] = None, batch_size: int = 32,
                     max_samples: Optional[int] = None
                     ) -> Tuple[np.ndarray, np.ndarray]:
  """Frozen pooled features of every readable clip of ``source``.

  Args:
    params: encoder params (``params['encoder']`` of a composite
      model, or ``checkpoints.load_encoder``'s first result).
    arch_name: their architecture, e.g. ``'cnn12_tiny'``.
    source: clips of any length (each is pooled whole, padding masked).
    block: the block whose output is pooled (default the last).
    batch_size: clips per forward pass.
    max_samples: clips longer than this keep their first ``max_samples``.
  Returns:
    (float32 ``[N, C_block]``, labels ``[N]`` or ``[N, K]``) over the N
    readable clips in source order.
  """
  arch = get_network(arch_name)
  block = arch.num_blocks if block is None else block
  arch.check_block(block)
  features = _features_fn(arch_name, block)
  rows, labels = [], []
  with pipeline.eval_batches(
      source, batch_size=batch_size, max_samples=max_samples,
      min_samples=arch.min_input_length(arch.num_blocks),
      pad_multiple=evaluate.PAD_MULTIPLE) as batches:
    for batch in batches:
      valid = np.asarray(batch["valid"], bool)
      out = features(params, batch["audio"], batch["mask"])
      rows.append(np.asarray(out, np.float32)[valid])
      labels.append(np.asarray(batch["label"])[valid])
  if not rows or sum(len(r) for r in rows) == 0:
    raise ValueError(f"no readable clip in {getattr(source, 'name', '?')!r}")
  return np.concatenate(rows), np.concatenate(labels)


def _fit(x: np.ndarray, y: np.ndarray, c: float):
  # Imported here: scikit-learn is only needed when a probe runs.
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from sklearn.pipeline import make_pipeline  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  model = make_pipeline(StandardScaler(),
                        LogisticRegression(C=c, max_iter=2000))
  return model.fit(x, y)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray,
                 test_x: np.ndarray, test_y: np.ndarray, *,
                 val: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                 cs: Sequence[float] = DEFAULT_CS,
                 val_fraction: float = 0.25, seed: int = 0) -> ProbeResult:
  """Logistic-regression probe, ``C`` selected without the test split.

  Args:
    train_x, train_y: ``[N, D]`` features and int ``[N]`` labels to fit.
    test_x, test_y: ``[M, D]``, ``[M]``: scored once, after ``C`` is chosen.
    val: ``(features, labels)`` that choose ``C`` (the final fit then uses
      train + val); None: a stratified ``val_fraction`` holdout of train.
    cs: candidate inverse L2 strengths (the first best one wins ties).
    val_fraction: share of train held out when ``val`` is None.
    seed: that holdout's seed.
  Returns:
    a :class:`ProbeResult`.
  Raises:
    ValueError: mismatched shapes, non-integer labels, fewer than two
      classes, non-finite features or an empty ``cs``.
  """
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top
  train_x = np.asarray(train_x, np.float64)
  test_x = np.asarray(test_x, np.float64)
  train_y = np.asarray(train_y)
  test_y = np.asarray(test_y)
  if train_x.ndim != 2 or test_x.ndim != 2 or \
      train_x.shape[1] != test_x.shape[1]:
    raise ValueError(f"features must be [N, D] with equal D, got "
                     f"{train_x.shape} and {test_x.shape}")
  if train_y.shape != (len(train_x),) or test_y.shape != (len(test_x),):
    raise ValueError(f"labels must be [N] int class indices, got "
                     f"{train_y.shape} and {test_y.shape}")
  if not (np.issubdtype(train_y.dtype, np.integer) and
          np.issubdtype(test_y.dtype, np.integer)):
    raise ValueError("the probe needs int class labels (single-label data)")
  if not (np.all(np.isfinite(train_x)) and np.all(np.isfinite(test_x))):
    raise ValueError("features contain NaN or inf")
  if len(np.unique(train_y)) < 2:
    raise ValueError("the probe needs at least two classes in train")
  if not cs:
    raise ValueError("cs is empty")
  if val is None:
    fit_x, val_x, fit_y, val_y = train_test_split(
        train_x, train_y, test_size=val_fraction, random_state=seed,
        stratify=train_y)
  else:
    fit_x, fit_y = train_x, train_y
    val_x, val_y = np.asarray(val[0], np.float64), np.asarray(val[1])
    if val_x.ndim != 2 or val_x.shape[1] != train_x.shape[1] or \
        val_y.shape != (len(val_x),) or not np.all(np.isfinite(val_x)):
      raise ValueError(f"val features {val_x.shape} / labels {val_y.shape} "
                       f"do not match train {train_x.shape}")
    train_x = np.concatenate([train_x, val_x])
    train_y = np.concatenate([train_y, val_y])
  val_scores = [float(np.mean(_fit(fit_x, fit_y, c).predict(val_x) == val_y))
                for c in cs]
  best = int(np.argmax(val_scores))
  model = _fit(train_x, train_y, cs[best])
  accuracy = float(np.mean(model.predict(test_x) == test_y))
  classes, counts = np.unique(train_y, return_counts=True)
  majority = float(np.mean(test_y == classes[np.argmax(counts)]))
  return ProbeResult(accuracy=accuracy, majority=majority, c=float(cs[best]),
                     val_accuracy=val_scores[best], num_train=len(train_x),
                     num_test=len(test_x))


def probe_encoder(params: Any, arch_name: str, train_source: ClipSource,
                  test_source: ClipSource, *,
                  val_source: Optional[ClipSource] = None,
                  block: Optional[int] = None,
                  cs: Sequence[float] = DEFAULT_CS, seed: int = 0,
                  max_samples: Optional[int] = None) -> ProbeResult:
  """:func:`linear_probe` on an encoder's frozen features (train -> test;
  ``C`` chosen on ``val_source`` if given, else on a holdout of train)."""
  def features(source):
    return encoder_features(params, arch_name, source, block=block,
                            max_samples=max_samples)

  val = features(val_source) if val_source is not None else None
  return linear_probe(*features(train_source), *features(test_source),
                      val=val, cs=cs, seed=seed)


def probe_run(run_dir: str, train_source: ClipSource,
              test_source: ClipSource, **kwargs) -> Dict[str, ProbeResult]:
  """Probes a run's selected encoder (``checkpoints.choose_step``) and its
  step-0 checkpoint (its untrained init: same seed, same architecture).

  Args:
    run_dir: a trainer workdir that kept step 0 (``config.keep_steps``).
    train_source, test_source: probe fit and test clips (pass
      ``val_source=`` to choose ``C`` on it).
    **kwargs: passed to :func:`probe_encoder`.
  Returns:
    ``{'trained': ProbeResult, 'init': ProbeResult}``.
  """
  from sonify_jax.train import checkpoints  # pylint: disable=g-import-not-at-top
  out = {}
  for name, step in (("trained", None), ("init", 0)):
    params, arch_name = checkpoints.load_encoder(run_dir, step)
    out[name] = probe_encoder(params, arch_name, train_source, test_source,
                              **kwargs)
  return out
