"""Layer importance (thesis 6.1): how good is an encoder truncated at block L?

For each L: keep blocks 1..L, mean-pool block L's output over time
(``Encoder.pooled_features(upto_block=L)``) and put a linear classifier on it.

* ``fconly``: the truncated encoder is frozen; features are extracted once
  (streamed; only ``[N, C_L]`` features are kept), standardised with the
  train-set mean/std, and a linear softmax (single-label) or sigmoid
  (multilabel) classifier is fit full-batch with Adam (a few hundred steps of
  convex optimisation: effectively the logistic-regression optimum with a
  small L2 penalty).
* ``full``: blocks 1..L and the linear head are fine-tuned together with Adam
  on minibatches of train clips, the head starting from the fconly solution.

Both are scored on the test source with ``sonify_jax.train.metrics``. Params
of blocks above L are never read: the truncated tree holds blocks 1..L only.

Train and test clips never overlap: from a dataset they are two of its splits
(the run's ``train_split`` and the split studied); from one folder
(``--audio_dir``) :func:`grouped_split` holds out whole source files (a
file's clips, and files that differ only in their extension, all on one
side), and the JSON records which clips fell where (``probe_split``).
"""
import functools
import hashlib
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sonify_jax import atomic_io
from sonify_jax.analysis.core import common
from sonify_jax.analysis import studies
from sonify_jax.analysis.core import controls
from sonify_jax.analysis.core import shares
from sonify_jax.errors import UserError
from sonify_jax.models.network import Network
from sonify_jax.models.encoder import Encoder

Params = Any


def truncate(params: Params, layer: int, arch: Network) -> Dict[str, Any]:
  """Only the params of blocks ``1..layer`` of an encoder params tree."""
  names = [l.name for l in arch.layers_upto(layer) if hasattr(l, "name")]
  missing = [n for n in names if n not in params]
  if missing:
    raise ValueError(f"encoder params lack {missing}")
  return {n: params[n] for n in names}


@functools.partial(jax.jit, static_argnames=("layer", "arch"))
def _pooled(trunc: Params, audio: jax.Array, layer: int, arch: Network
            ) -> jax.Array:
  return Encoder(net=arch).apply({"params": trunc}, audio, layer,
                                method=Encoder.pooled_features)


def extract_features(params: Params, arch: Network, source, layer: int,
                     batch_size: int = 16, clip_samples: Optional[int] = None,
                     max_clips: Optional[int] = None, progress: bool = True,
                     share: shares.Share = shares.Share()
                     ) -> Tuple[np.ndarray, np.ndarray]:
  """``([N, C_layer] mean-pooled block-``layer`` features, labels)``.

  Each process streams its ``share`` of the clips; every process gets every
  clip's row, in clip order.
  """
  arch.check_block(layer)
  trunc = truncate(params, layer, arch)
  feats, labels, index = [], [], []
  total = len(source) if max_clips is None else min(len(source), max_clips)
  bar = common.Progress(f"features L{layer}", share.clips_of(total),
                        enabled=progress)
  for batch in common.iter_clip_batches(source, batch_size,
                                        arch.min_input_length(layer),
                                        clip_samples, max_clips,
                                        owns=share.owns):
    valid = batch["valid"]
    feats.append(np.asarray(_pooled(trunc, batch["audio"], layer, arch))[valid])
    labels.append(batch["label"][valid])
    index.append(batch["index"][valid])
    bar.update(int(valid.sum()))
  bar.close()
  if not sum(shares.gather(len(index), share)):
    raise ValueError("the source holds no clips")
  mine = np.concatenate(index) if index else np.zeros(0, np.int64)
  _, feats = shares.in_clip_order(
      mine, np.concatenate(feats) if feats else None, share)
  _, labels = shares.in_clip_order(
      mine, np.concatenate(labels) if labels else None, share)
  return feats, labels


def _loss(logits, labels, multilabel):
  if multilabel:
    return optax.sigmoid_binary_cross_entropy(logits, labels).mean()
  return optax.softmax_cross_entropy_with_integer_labels(logits,
                                                         labels).mean()


def _scores(logits, multilabel):
  return jax.nn.sigmoid(logits) if multilabel else jax.nn.softmax(logits, -1)


@functools.partial(jax.jit, static_argnames=("num_classes", "multilabel",
                                             "steps"))
def _fit_linear(x, y, num_classes, multilabel, steps, learning_rate, l2):
  w = {"kernel": jnp.zeros((x.shape[1], num_classes)),
       "bias": jnp.zeros((num_classes,))}
  opt = optax.adam(learning_rate)

  def loss_fn(w):
    logits = x @ w["kernel"] + w["bias"]
    return _loss(logits, y, multilabel) + l2 * jnp.sum(w["kernel"] ** 2)

  def body(_, carry):
    w, state = carry
    grads = jax.grad(loss_fn)(w)
    updates, state = opt.update(grads, state)
    return optax.apply_updates(w, updates), state

  w, _ = jax.lax.fori_loop(0, steps, body, (w, opt.init(w)))
  return w


class LinearProbe:
  """Standardise + linear classifier fit on fixed features."""

  def __init__(self, num_classes: int, multilabel: bool, steps: int = 300,
               learning_rate: float = 0.05, l2: float = 1e-4):
    self.num_classes, self.multilabel = num_classes, multilabel
    self.steps, self.learning_rate, self.l2 = steps, learning_rate, l2

  def fit(self, features: np.ndarray, labels: np.ndarray) -> "LinearProbe":
    features = np.asarray(features, np.float32)
    self.mean = features.mean(0)
    self.std = features.std(0) + 1e-6
    y = (np.asarray(labels, np.float32) if self.multilabel
         else np.asarray(labels, np.int32))
    self.weights = _fit_linear(jnp.asarray((features - self.mean) / self.std),
                               jnp.asarray(y), self.num_classes,
                               self.multilabel, self.steps,
                               self.learning_rate, self.l2)
    return self

  def logits(self, features: np.ndarray) -> np.ndarray:
    x = (np.asarray(features, np.float32) - self.mean) / self.std
    return np.asarray(x @ self.weights["kernel"] + self.weights["bias"])

  def scores(self, features: np.ndarray) -> np.ndarray:
    return np.asarray(_scores(self.logits(features), self.multilabel))


def _metrics(scores, labels, multilabel):
  from sonify_jax.train import metrics  # pylint: disable=g-import-not-at-top
  return metrics.compute_metrics(scores, labels, multilabel)


def fine_tune(params: Params, arch: Network, layer: int, source,
              probe: LinearProbe, steps: int = 100, batch_size: int = 16,
              learning_rate: float = 1e-3, clip_samples: Optional[int] = None,
              seed: int = 0, progress: bool = True
              ) -> Tuple[Params, LinearProbe]:
  """``full`` mode: Adam on blocks 1..L + head, cycling through ``source``.

  The probe's standardisation is folded into the head (fixed); returns the
  fine-tuned truncated params and a probe with the fine-tuned head.
  """
  multilabel = probe.multilabel
  trainable = {"encoder": truncate(params, layer, arch), "head": probe.weights}
  mean, std = jnp.asarray(probe.mean), jnp.asarray(probe.std)
  opt = optax.adam(learning_rate)

  @jax.jit
  def step(p, state, audio, labels, weight):
    def loss_fn(p):
      feats = _pooled(p["encoder"], audio, layer, arch)
      logits = ((feats - mean) / std) @ p["head"]["kernel"] + p["head"][
          "bias"]
      if multilabel:
        per = optax.sigmoid_binary_cross_entropy(logits, labels).mean(-1)
      else:
        per = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
      return (per * weight).sum() / weight.sum()
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, state = opt.update(grads, state, p)
    return optax.apply_updates(p, updates), state, loss

  state = opt.init(trainable)
  done = 0
  bar = common.Progress(f"fine-tune L{layer}", steps, unit="steps",
                        enabled=progress)
  rng = np.random.default_rng(seed)
  while done < steps:
    order = rng.permutation(len(source))
    shuffled = _Reordered(source, order)
    for batch in common.iter_clip_batches(
        shuffled, batch_size, arch.min_input_length(layer),
        clip_samples):
      labels = (batch["label"].astype(np.float32) if multilabel
                else batch["label"].astype(np.int32))
      trainable, state, _ = step(trainable, state, batch["audio"], labels,
                                 batch["valid"].astype(np.float32))
      done += 1
      bar.update(1)
      if done >= steps:
        break
  bar.close()
  tuned = LinearProbe(probe.num_classes, multilabel)
  tuned.mean, tuned.std = probe.mean, probe.std
  tuned.weights = trainable["head"]
  return trainable["encoder"], tuned


class _Reordered:
  """A ClipSource view in another order (an epoch's shuffle)."""

  def __init__(self, source, order):
    self.source, self.order = source, order

  def __len__(self):
    return len(self.order)

  def __getitem__(self, i):
    return self.source[int(self.order[i])]


def _probe_layers(params, arch, train_source, test_source, layers, modes,
                  probe_steps, full_steps, full_learning_rate, batch_size,
                  clip_samples, max_clips, progress, label, share):
  """``{mode: {layer: metrics}}`` of one encoder."""
  multilabel = bool(train_source.multilabel)
  results: Dict[str, Dict[int, Dict[str, float]]] = {m: {} for m in modes}
  for layer in layers:
    common.log(f"layer importance ({label}): layer {layer}")
    x_tr, y_tr = extract_features(params, arch, train_source, layer,
                                  batch_size, clip_samples, max_clips,
                                  progress, share)
    x_te, y_te = extract_features(params, arch, test_source, layer,
                                  batch_size, clip_samples, max_clips,
                                  progress, share)
    probe = LinearProbe(train_source.num_classes, multilabel,
                        steps=probe_steps).fit(x_tr, y_tr)
    if "fconly" in modes:
      results["fconly"][layer] = _metrics(probe.scores(x_te), y_te,
                                          multilabel)
    if "full" in modes:
      tuned_params, tuned = fine_tune(params, arch, layer, train_source,
                                      probe, full_steps, batch_size,
                                      full_learning_rate, clip_samples,
                                      progress=progress)
      x_te2, _ = extract_features(tuned_params, arch, test_source, layer,
                                  batch_size, clip_samples, max_clips,
                                  progress, share)
      results["full"][layer] = _metrics(tuned.scores(x_te2), y_te,
                                        multilabel)
  return results


def prior_baseline(train_source, test_source,
                   max_clips: Optional[int] = None) -> Dict[str, float]:
  """Metrics of the trivial classifier that scores every test clip with the
  train set's class frequencies (what a probe must beat)."""
  def labels(source):
    n = len(source) if max_clips is None else min(len(source), max_clips)
    return np.stack([np.asarray(source[i]["label"]) for i in range(n)])
  multilabel = bool(train_source.multilabel)
  y_tr, y_te = labels(train_source), labels(test_source)
  hot = y_tr if multilabel else np.eye(train_source.num_classes)[y_tr]
  prior = hot.astype(np.float64).mean(0)
  return _metrics(np.tile(prior, (len(y_te), 1)), y_te, multilabel)


def run_layer_importance(params: Params, arch: Network, train_source,
                         test_source, out_dir: str,
                         layers: Optional[Sequence[int]] = None,
                         modes: Sequence[str] = ("fconly", "full"),
                         probe_steps: int = 300, full_steps: int = 100,
                         full_learning_rate: float = 1e-3,
                         batch_size: int = 16,
                         clip_samples: Optional[int] = None,
                         max_clips: Optional[int] = None,
                         metric: str = "mAP", progress: bool = True,
                         untrained: Optional[Params] = None,
                         probe_split: Optional[Dict[str, Any]] = None,
                         share: Optional[shares.Share] = None
                         ) -> Dict[str, Dict[int, Dict[str, float]]]:
  """Scores per truncation depth; writes layer_importance.{json,png}.

  With ``untrained`` (the run's untrained init), the same probes are fit on
  it as the control; the class-prior classifier is the trivial baseline.
  There is no random-map control here: a probe reads every map of a layer
  (``per_layer``'s ``random_map`` is null).

  ``clip_samples`` must be at least the receptive field of the deepest layer
  for fixed-length crops; by default clips are used whole.

  ``probe_split`` (how train and test clips were chosen, e.g.
  :func:`grouped_split`'s record) is written to the JSON as is.

  Over several processes (``share``, default the running process's) each
  extracts the features of its share of the clips and every process fits
  the same probes on all of them; ``full`` fine-tuning still runs whole in
  every process.

  Returns:
    ``{mode: {layer: metrics}}`` of the trained encoder, plus
    ``'untrained'`` (same shape, if given) and ``'prior'`` (metrics).
  """
  from sonify_jax.analysis.figures import panels  # pylint: disable=g-import-not-at-top
  layers = common.check_layers(layers, arch)
  for mode in modes:
    if mode not in ("fconly", "full"):
      raise ValueError(f"mode must be 'fconly' or 'full', got {mode!r}")
  args = (arch, train_source, test_source, layers, modes, probe_steps,
          full_steps, full_learning_rate, batch_size, clip_samples, max_clips,
          progress)
  share = share or shares.Share.of_process()
  conditions = {controls.TRAINED: _probe_layers(params, *args, "trained",
                                                share)}
  if untrained is not None:
    conditions[controls.UNTRAINED] = _probe_layers(untrained, *args,
                                                   "untrained", share)
  prior = prior_baseline(train_source, test_source, max_clips)
  results: Dict[str, Any] = dict(conditions[controls.TRAINED])
  if share.chief:   # every process holds the result; one writes it
    os.makedirs(out_dir, exist_ok=True)
    panels.condition_curves(
        os.path.join(out_dir, "layer_importance.png"), layers,
        {m: ({c: ([r[m][l][metric] for l in layers], None)
              for c, r in conditions.items()}, 1) for m in modes},
        ylabel=metric, title="Truncated encoder (blocks 1..L) + linear head",
        baselines={f"class prior {prior[metric]:.3f}": prior[metric]})
    atomic_io.write_json(os.path.join(out_dir, "layer_importance.json"), {
        "metric": metric, "layers": list(layers),
        "results": {m: {str(l): v for l, v in r.items()}
                    for m, r in results.items()},
        "per_layer": {str(l): {
            **{c: {m: r[m][l] for m in modes} for c, r in conditions.items()},
            controls.RANDOM_MAP: None} for l in layers},
        "prior_baseline": prior,
        **({"probe_split": probe_split} if probe_split is not None else {})})
  if untrained is not None:
    results[controls.UNTRAINED] = conditions[controls.UNTRAINED]
  results["prior"] = prior
  return results


# ------------------------------------------- held-out clips of one folder

TEST_FRACTION = 0.3     # share of a folder's clips the probe is scored on
MIN_GROUPS_PER_SIDE = 2


def file_group(clip_id: str) -> str:
  """The group of a clip: its source file, without the extension (one
  recording saved as ``a.wav`` and ``a.flac`` is one group)."""
  return os.path.splitext(str(clip_id).split("#", 1)[0])[0]


class Subset:
  """The clips ``indices`` of a ClipSource, with its attributes."""

  def __init__(self, source, indices: Sequence[int], part: str):
    self.source, self.indices = source, [int(i) for i in indices]
    self.num_classes = source.num_classes
    self.multilabel = source.multilabel
    self.class_names = getattr(source, "class_names", None)
    self.name = f"{getattr(source, 'name', 'source')} ({part})"

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, i: int):
    return self.source[self.indices[i]]


def grouped_split(ids: Sequence[str], test_fraction: float = TEST_FRACTION,
                  seed: int = 0,
                  group_of: Callable[[str], str] = file_group
                  ) -> Tuple[List[int], List[int], Dict[str, Any]]:
  """Train and test clip indices with no group on both sides.

  Whole groups go to test in the SHA-256 order of ``'{seed}:{group}'``
  until test holds ``round(test_fraction * len(ids))`` clips (at least one
  group), the rest to train.

  Returns:
    ``(train indices, test indices, record)``; the record (for the JSON)
    names the rule, the seed and every clip id of each side.
  Raises:
    UserError: fewer than ``2 * MIN_GROUPS_PER_SIDE`` groups.
  """
  groups: Dict[str, List[int]] = {}
  for i, clip_id in enumerate(ids):
    groups.setdefault(group_of(clip_id), []).append(i)
  if len(groups) < 2 * MIN_GROUPS_PER_SIDE:
    raise UserError(
        f"layer_importance needs clips it does not fit its probe on: "
        f"{len(groups)} source file(s) cannot be split into "
        f"{MIN_GROUPS_PER_SIDE} held-out and {MIN_GROUPS_PER_SIDE} training "
        f"files; give --audio_dir at least {2 * MIN_GROUPS_PER_SIDE} files")
  order = sorted(groups, key=lambda g: hashlib.sha256(
      f"{seed}:{g}".encode("utf-8")).hexdigest())
  target = max(1, int(round(test_fraction * len(ids))))
  test_groups: List[str] = []
  taken = 0
  for group in order:
    if taken >= target or len(order) - len(test_groups) <= (
        MIN_GROUPS_PER_SIDE):
      break
    test_groups.append(group)
    taken += len(groups[group])
  while len(test_groups) < MIN_GROUPS_PER_SIDE:  # tiny groups, large target
    test_groups.append(order[len(test_groups)])
  held = set(test_groups)
  test = sorted(i for g in test_groups for i in groups[g])
  train = sorted(i for g in order if g not in held for i in groups[g])
  record = {"how": "held-out source files (grouped: no file on both sides)",
            "seed": seed, "test_fraction": test_fraction,
            "groups": {"train": len(groups) - len(held), "test": len(held)},
            "train_clips": [str(ids[i]) for i in train],
            "test_clips": [str(ids[i]) for i in test]}
  return train, test, record


# ------------------------------------------------ python -m analysis.run


def _check(options) -> None:
  if options.audio_dir and options.train_split:
    raise UserError("--train_split names a dataset split; with --audio_dir "
                    "the probe's train clips are held out of the folder "
                    "itself (a grouped split): leave --train_split out")
  twice = sorted({m for m in options.modes if options.modes.count(m) > 1})
  if twice:
    raise UserError(f"--modes names {', '.join(twice)} twice")


def _run_study(context) -> None:
  o = context.options
  _, run = context.runs[0]
  if o.audio_dir:
    folder = context.source
    ids = [folder[i]["id"] for i in range(len(folder))]
    train_idx, test_idx, probe_split = grouped_split(ids)
    train = Subset(folder, train_idx, "probe train")
    test = Subset(folder, test_idx, "held out")
    context.say(f"layer importance: probe fit on {len(train)} clips of "
                f"{probe_split['groups']['train']} files, scored on "
                f"{len(test)} held-out clips of "
                f"{probe_split['groups']['test']} other files")
  else:
    test = context.source
    train = context.data(run, o.train_split or (run.info or {}).get(
        "config", {}).get("train_split", "train"), what="probe train")
    probe_split = {"how": "dataset splits",
                   "train": getattr(train, "name", None),
                   "test": getattr(test, "name", None)}
  run_layer_importance(
      run.trained, run.arch, train, test, context.workdir,
      layers=context.layers, modes=o.modes, untrained=run.untrained,
      probe_split=probe_split, **context.common_kw())
  context.record(os.path.join(context.workdir, "layer_importance.json"),
                 context.chosen[:1])
  context.say(f"layer importance: {context.workdir}/layer_importance.png")


STUDY = studies.Study(
    "layer_importance", studies.DATA_FLAGS | {"modes", "train_split"},
    _run_study, check=_check, labelled=True, max_runs=1)
