"""Training health: detect a run that is not learning and say why, once.

Pure detectors (functions of arrays and numbers) and :class:`HealthMonitor`,
the small stateful part the trainer feeds at each check point (every
evaluation; runs without evaluation check at each checkpoint). Each problem
is reported in ONE warning (logged once per run, with the likely cause and
the config knob to try) and recorded as a :class:`HealthEvent` (the trainer
writes it to metrics.jsonl). With ``config.stop_on_collapse`` a collapse ends
the run with :class:`TrainingCollapsed` (a ``UserError``: ``error:`` line,
exit status 2); a non-finite loss always ends it.

Detectors:
  * constant predictions -- one class is the top prediction for more than
    ``CONSTANT_SHARE`` of the validation clips (and the labels are not that
    skewed);
  * loss at chance -- the loss stays within ``CHANCE_TOLERANCE`` of what a
    model that ignores its input gets, for ``patience`` check points after
    the warmup: the entropy of the label prior for softmax CE (ln C for
    balanced classes), the BCE of predicting each class' prior for multilabel
    BCE, ln(2N - 1) for NT-Xent over 2N views;
  * collapsed encoder -- the pooled block-11 features (temporal means) of the
    probe clips barely vary across clips (relative spread below
    ``MIN_RELATIVE_SPREAD``) or every block-11 map is dead (zero) on them;
  * non-finite loss.

The likely cause named for the first three depends on the optimiser: in the
thesis' Adam with *coupled* L2, ``wd * params`` is added to the gradient
before Adam normalises it; when that term outweighs the loss gradient (the
small gradients of a normalisation-free CNN on a small data set), every
weight moves towards zero by about ``lr`` per step whatever ``wd`` is, and
the encoder's output becomes a constant (measured on real speech: full
CNN12, lr 1e-3, |params| fell 21 % in 30 steps, loss at ln C). The monitor
compares ``wd * ||params||`` with ``||grad||`` and the params' norm with its
initial value and, when the decay wins, says so and names
``--config.decoupled_weight_decay=True``.

Hand-written: no kept library watches a JAX training run for these.
"""
import dataclasses
import math
from typing import Any, Dict, List, Optional

from absl import logging
import numpy as np

from sonify_jax.errors import UserError

CONSTANT_SHARE = 0.9
CHANCE_TOLERANCE = 0.02        # relative
MIN_RELATIVE_SPREAD = 1e-3
PATIENCE = 3
SHRINK = 0.1                   # relative fall of |params| that names L2

CONSTANT_PREDICTIONS = "constant_predictions"
LOSS_AT_CHANCE = "loss_at_chance"
COLLAPSED_ENCODER = "collapsed_encoder"
NON_FINITE_LOSS = "non_finite_loss"
KINDS = (CONSTANT_PREDICTIONS, LOSS_AT_CHANCE, COLLAPSED_ENCODER,
         NON_FINITE_LOSS)


class TrainingCollapsed(UserError):
  """The run stopped because it collapsed (``config.stop_on_collapse``)."""


@dataclasses.dataclass(frozen=True)
class HealthEvent:
  kind: str
  step: int
  message: str
  values: Dict[str, float]


# ---------------------------------------------------------------- detectors


def top_class_share(scores: np.ndarray) -> tuple:
  """(class, share) of the most frequent top-scoring class over clips."""
  scores = np.asarray(scores)
  if scores.ndim != 2 or len(scores) == 0:
    raise ValueError(f"scores must be [clips, classes], got {scores.shape}")
  top = np.argmax(scores, axis=1)
  counts = np.bincount(top, minlength=scores.shape[1])
  cls = int(np.argmax(counts))
  return cls, float(counts[cls] / len(top))


def label_majority_share(labels: np.ndarray, num_classes: int) -> float:
  """Share of the most frequent class among single labels, or of the most
  frequent positive among multi-hot rows."""
  labels = np.asarray(labels)
  if labels.ndim == 1:
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes)
    return float(counts.max() / max(len(labels), 1))
  return float(labels.mean(axis=0).max()) if len(labels) else 0.0


def constant_predictions(scores: np.ndarray, labels: np.ndarray,
                         share: float = CONSTANT_SHARE) -> Optional[Dict]:
  """{'class', 'share', 'label_share'} when one class is the top prediction
  for more than ``share`` of the clips while the labels are not that skewed;
  None otherwise."""
  cls, top_share = top_class_share(scores)
  label_share = label_majority_share(labels, np.shape(scores)[1])
  if top_share > share and label_share <= share:
    return {"class": float(cls), "share": top_share,
            "label_share": label_share}
  return None


def chance_cross_entropy(prior: np.ndarray) -> float:
  """Softmax CE of predicting the class prior: its entropy (ln C if
  balanced)."""
  p = np.asarray(prior, np.float64)
  p = p[p > 0] / p.sum()
  return float(-(p * np.log(p)).sum())


def chance_binary_cross_entropy(prior: np.ndarray) -> float:
  """Mean-over-classes BCE of predicting each class' prior probability."""
  p = np.clip(np.asarray(prior, np.float64), 1e-12, 1 - 1e-12)
  return float(np.mean(-(p * np.log(p) + (1 - p) * np.log(1 - p))))


def chance_nt_xent(global_batch: int) -> float:
  """NT-Xent when every view is equally similar to the 2N - 1 others."""
  if global_batch < 1:
    raise ValueError(f"global_batch must be >= 1, got {global_batch}")
  return math.log(2 * global_batch - 1)


def label_prior(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Class frequencies of single labels, or positive rates of multi-hot."""
  labels = np.asarray(labels)
  if labels.ndim == 1:
    counts = np.bincount(labels.astype(np.int64), minlength=num_classes)
    return counts / max(counts.sum(), 1)
  return labels.astype(np.float64).mean(axis=0)


def eval_loss(scores: np.ndarray, labels: np.ndarray,
              multilabel: bool) -> float:
  """The training loss (mean CE or BCE) of probability ``scores``."""
  p = np.clip(np.asarray(scores, np.float64), 1e-7, 1 - 1e-7)
  labels = np.asarray(labels)
  if multilabel:
    y = labels.astype(np.float64)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))
  picked = p[np.arange(len(p)), labels.astype(np.int64)]
  return float(np.mean(-np.log(picked)))


def at_chance(loss: float, chance: float,
              tolerance: float = CHANCE_TOLERANCE) -> bool:
  return bool(np.isfinite(loss) and abs(loss - chance) <= tolerance * chance)


def encoder_spread(pooled: np.ndarray) -> Dict[str, float]:
  """How much pooled features ``[clips, maps]`` vary across clips.

  Returns ``relative_spread`` (mean over maps of the std across clips,
  divided by the mean absolute feature; 0 when every feature is 0),
  ``dead_fraction`` (maps that are zero on every clip) and ``num_maps``.
  """
  x = np.asarray(pooled, np.float64)
  if x.ndim != 2 or len(x) < 2:
    raise ValueError(f"pooled must be [clips >= 2, maps], got {x.shape}")
  scale = float(np.abs(x).mean())
  spread = float(x.std(axis=0).mean())
  dead = np.all(x == 0, axis=0)
  return {"relative_spread": spread / scale if scale > 0 else 0.0,
          "dead_fraction": float(dead.mean()), "num_maps": float(x.shape[1])}


def collapsed_encoder(pooled: np.ndarray,
                      min_spread: float = MIN_RELATIVE_SPREAD
                      ) -> Optional[Dict[str, float]]:
  """:func:`encoder_spread`'s figures when the encoder collapsed, else None."""
  stats = encoder_spread(pooled)
  if stats["dead_fraction"] == 1.0 or stats["relative_spread"] < min_spread:
    return stats
  return None


def decay_dominates(weight_decay: float, param_norm: float,
                    grad_norm: float, decoupled: bool,
                    initial_param_norm: Optional[float] = None) -> bool:
  """Whether coupled L2 drives the weights rather than the loss: its term
  ``wd * |params|`` outweighs the loss gradient, or the weights have shrunk
  by more than ``SHRINK`` since the start (Adam's normalised step shrinks
  every weight whose gradient is smaller than its decay term by ~lr per
  step; AdamW's decay is only lr * wd per step)."""
  if decoupled or weight_decay <= 0:
    return False
  shrunk = (initial_param_norm is not None and initial_param_norm > 0 and
            param_norm < (1.0 - SHRINK) * initial_param_norm)
  return bool(weight_decay * param_norm > grad_norm or shrunk)


def chance_loss(labels: np.ndarray, num_classes: int,
                multilabel: bool) -> float:
  """The supervised loss of a model that predicts the labels' prior."""
  prior = label_prior(labels, num_classes)
  return (chance_binary_cross_entropy(prior) if multilabel
          else chance_cross_entropy(prior))


# ------------------------------------------------- the trainer's encoder probe


def probe_clips(source, num_clips: int, crop_samples: int) -> tuple:
  """The first ``num_clips`` clips of ``source``, each cut to its first
  ``crop_samples`` (zero-padded, with a 0/1 mask): ``(audio, mask)``; None
  when the source has fewer than 2 clips (no spread to measure)."""
  num_clips = min(int(num_clips), len(source))
  if num_clips < 2:
    return None
  audio = np.zeros((num_clips, crop_samples), np.float32)
  mask = np.zeros((num_clips, crop_samples), np.float32)
  for i in range(num_clips):
    clip = np.asarray(source[i]["audio"], np.float32)[:crop_samples]
    audio[i, :len(clip)] = clip
    mask[i, :len(clip)] = 1.0
  return audio, mask


def make_pooled_features_fn(arch_name: str):
  """``fn(encoder_params, audio, mask) -> np.ndarray [clips, maps]``: the
  temporal means of block 11 (ReLU outputs, so 0 means a dead map)."""
  import jax  # pylint: disable=g-import-not-at-top
  from sonify_jax.models.registry import get_network  # pylint: disable=g-import-not-at-top
  from sonify_jax.models.encoder import Encoder  # pylint: disable=g-import-not-at-top
  encoder = Encoder(net=get_network(arch_name), dropout_rate=0.0)
  jitted = jax.jit(lambda p, a, m: encoder.apply(
      {"params": p}, a, mask=m, method=Encoder.pooled_features))

  def fn(params, audio, mask):
    return np.asarray(jax.device_get(jitted(params, audio, mask)), np.float32)
  return fn


def tree_norm(tree: Any) -> float:
  """Global L2 norm of a pytree of arrays."""
  import optax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  return float(jax.device_get(optax.tree.norm(tree)))


# ------------------------------------------------------------------ monitor


def _likely_cause(kind: str, task: str, optimiser: Dict[str, float]) -> str:
  """The likely cause and the knob to try, for a warning's second half."""
  wd, lr = optimiser.get("weight_decay", 0.0), optimiser.get("lr", 0.0)
  pn, gn = optimiser.get("param_norm"), optimiser.get("grad_norm")
  p0 = optimiser.get("initial_param_norm")
  if kind == NON_FINITE_LOSS:
    return ("likely cause: the learning rate is too high for this model "
            "(exploding activations or gradients); try a lower "
            "--config.learning_rate or --config.clip_norm=1.0")
  if pn is not None and gn is not None and decay_dominates(
      wd, pn, gn, bool(optimiser.get("decoupled", False)), p0):
    shrink = (f"|params| fell from {p0:.4g} to {pn:.4g}, "
              if p0 else "")
    return (f"likely cause: the coupled L2 weight decay (the thesis' Adam "
            f"form) outweighs the loss gradient ({shrink}wd*|params| = "
            f"{wd * pn:.3g}, |grad| = {gn:.3g}): Adam normalises their sum, "
            "so every weight whose gradient is smaller than its decay "
            "shrinks by ~lr per step, and without normalisation layers the "
            "encoder's output fades to a constant. Try "
            "--config.decoupled_weight_decay=True (AdamW) or a smaller "
            "--config.weight_decay")
  if task == "simclr" and kind == LOSS_AT_CHANCE:
    return ("likely cause: the views are too hard or too easy to match (all "
            "pairs look alike); try --config.temperature, weaker "
            "--config.augment.* settings, longer --config.crop_seconds or a "
            "different --config.learning_rate")
  knobs = ("another --config.learning_rate, a longer "
           "--config.warmup_epochs or --config.clip_norm=1.0")
  if not optimiser.get("decoupled", False) and wd > 0:
    knobs += ", or --config.decoupled_weight_decay=True"
  return (f"likely cause: the learning rate ({lr:.3g}) is too high or too "
          "low for this model and data, or the encoder's ReLUs died; try "
          + knobs)


class HealthMonitor:
  """Feeds the detectors, reports each problem once, remembers events.

  Args:
    task: 'simclr' or 'supervised'.
    warmup_steps: only a non-finite loss is reported up to this step (a
      model still warming up may legitimately look constant).
    patience: consecutive check points at chance before reporting it.
    stop_on_collapse: raise :class:`TrainingCollapsed` on a collapse.
    initial_param_norm: |params| at the start (default: at the first check).
    log: where the warnings go (default: absl ``logging.warning``).
  """

  def __init__(self, task: str, warmup_steps: int = 0,
               patience: int = PATIENCE, stop_on_collapse: bool = False,
               initial_param_norm: Optional[float] = None, log=None):
    self.task = task
    self.warmup_steps = int(warmup_steps)
    self.patience = max(1, int(patience))
    self.stop_on_collapse = bool(stop_on_collapse)
    self.events: List[HealthEvent] = []
    self._reported = set()
    self._chance_streak = 0
    self._initial_param_norm = initial_param_norm
    self._log = log or logging.warning

  def _report(self, kind: str, step: int, what: str, values: Dict[str, float],
              optimiser: Dict[str, float]) -> Optional[HealthEvent]:
    if kind in self._reported:
      return None
    self._reported.add(kind)
    message = (f"training health ({kind}) at step {step}: {what}; "
               f"{_likely_cause(kind, self.task, optimiser)}")
    event = HealthEvent(kind, int(step), message, dict(values))
    self.events.append(event)
    self._log(message)
    return event

  def check(self, step: int, *, loss: Optional[float] = None,
            chance: Optional[float] = None,
            scores: Optional[np.ndarray] = None,
            labels: Optional[np.ndarray] = None,
            pooled: Optional[np.ndarray] = None,
            optimiser: Optional[Dict[str, float]] = None
            ) -> List[HealthEvent]:
    """Runs every detector the given inputs allow; returns new events.

    Args:
      step: the training step checked.
      loss: the monitored loss (validation loss for supervised runs, the
        train loss for SimCLR) and ``chance``, its value for a model that
        ignores its input.
      scores, labels: validation scores ``[N, C]`` and labels.
      pooled: pooled block-11 features ``[clips, maps]`` of probe clips.
      optimiser: ``lr``, ``weight_decay``, ``decoupled``, ``param_norm``,
        ``grad_norm`` (for the cause; ``param_norm`` is also remembered as
        the initial one at the first call unless given to the constructor).

    Returns:
      The events reported now (each kind once per run); pass them to
      :meth:`stop_if_fatal` after recording them.
    """
    optimiser = dict(optimiser or {})
    if self._initial_param_norm is None and optimiser.get("param_norm"):
      self._initial_param_norm = float(optimiser["param_norm"])
    optimiser.setdefault("initial_param_norm", self._initial_param_norm)
    new = []
    if loss is not None and not np.isfinite(loss):
      new.append(self._report(NON_FINITE_LOSS, step,
                              f"the loss is {loss}", {"loss": loss},
                              optimiser))
    if step <= self.warmup_steps:
      # A model still warming up may look constant; only a NaN counts yet.
      return [e for e in new if e is not None]
    if scores is not None and labels is not None:
      found = constant_predictions(scores, labels)
      if found:
        new.append(self._report(
            CONSTANT_PREDICTIONS, step,
            f"class {int(found['class'])} is the top prediction for "
            f"{found['share']:.0%} of the {len(scores)} validation clips "
            f"(the most frequent label covers {found['label_share']:.0%})",
            found, optimiser))
    if pooled is not None:
      found = collapsed_encoder(pooled)
      if found:
        what = ("every block-11 map is dead (zero) on the probe clips"
                if found["dead_fraction"] == 1.0 else
                f"the pooled block-11 features barely vary across the "
                f"{len(pooled)} probe clips (relative spread "
                f"{found['relative_spread']:.2g} < {MIN_RELATIVE_SPREAD:g})")
        new.append(self._report(COLLAPSED_ENCODER, step, what, found,
                                optimiser))
    if loss is not None and chance is not None:
      self._chance_streak = (self._chance_streak + 1
                             if at_chance(loss, chance) else 0)
      if self._chance_streak >= self.patience:
        new.append(self._report(
            LOSS_AT_CHANCE, step,
            f"the loss {loss:.4f} has stayed at chance ({chance:.4f}) for "
            f"{self._chance_streak} check points", {"loss": loss,
                                                    "chance": chance},
            optimiser))
    return [e for e in new if e is not None]

  def stop_if_fatal(self, events: List[HealthEvent]) -> None:
    """Raises :class:`TrainingCollapsed` for a non-finite loss, and for any
    problem when ``stop_on_collapse`` (call after recording ``events``)."""
    fatal = [e for e in events if e.kind == NON_FINITE_LOSS or
             self.stop_on_collapse]
    if fatal:
      reason = ("a non-finite loss cannot recover"
                if fatal[0].kind == NON_FINITE_LOSS
                else "config.stop_on_collapse=True")
      raise TrainingCollapsed(f"{fatal[0].message} (run stopped: {reason})")


def event_scalars(event: HealthEvent) -> Dict[str, float]:
  """An event as metrics.jsonl / TensorBoard scalars: ``health/KIND`` = 1
  and ``health/KIND/NAME`` for its figures."""
  out = {f"health/{event.kind}": 1.0}
  out.update({f"health/{event.kind}/{k}": float(v)
              for k, v in event.values.items()})
  return out
