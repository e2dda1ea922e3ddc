"""Shared defaults and arg parsing for the experiment configs (not a config).

Every config file is ``get_config(arg=None) -> ConfigDict``; ``arg`` is the
text after ':' in ``--config=configs/X.py:arg``, e.g. ``'tau=0.2,aug=no_mix'``.

Optimiser (all experiments): Adam with L2 weight decay 1e-3 in the coupled
form of PyTorch's ``Adam(weight_decay=)`` that the thesis used (the decay is
added to the gradient before Adam; ``decoupled_weight_decay=True`` gives
AdamW), linear warmup over ``warmup_epochs`` then cosine decay to 0 at the
last step (``sonify_jax.train.optim.make_optimizer``). Batch sizes are GLOBAL
(split over all devices; a TPU v3-8 has 8 cores, so per core = batch / 8).

Thesis values (S. Yadav, MSc thesis, Glasgow 2022; ../shared/thesis-notes.md)
that every experiment config takes from here: Adam lr 1e-3, L2 1e-3, 10
warmup epochs then cosine, tau 0.1; supervised models (scratch, fine-tune and
linear eval alike) train with random gain, Gaussian noise, time masks and
mixup, and no background injection (that is SimCLR's only, ch. 4.3-4.4).

Model selection: ``eval_split`` is evaluated during training and picks the
best checkpoint (``best_metric``); ``test_split`` is evaluated once, at the
end, on that checkpoint (``WORKDIR/final_metrics.json``).

A config file imports this module with
``from sonify_jax.config_files import common`` (config files are imported by
path, not as members of the ``configs`` package, so they reach it through
``sonify_jax.config_files``) and builds on one
function per idea: ``simclr_config`` / ``supervised_base`` (the task's
fixed fields), ``model_selection`` (evaluation and best checkpoint),
``supervised_config`` (the thesis' supervised experiments), ``demo_budget``
(the demos' CPU-minutes setting).
"""
from typing import Any, Dict

import ml_collections

from sonify_jax.errors import UserError
from sonify_jax.models.registry import TRAINABLE

# Table 4.1 augmentation ablations: which of the four augmentations are on.
AUGMENTATION_SETS = {
    "all": ("gain", "noise", "masks", "mix"),
    "none": (),
    "no_gain": ("noise", "masks", "mix"),
    "no_noise": ("gain", "masks", "mix"),
    "no_mask": ("gain", "noise", "mix"),
    "no_mix": ("gain", "noise", "masks"),
    "only_gain": ("gain",),
    "only_noise": ("noise",),
    "only_mask": ("masks",),
    "only_mix": ("mix",),
}

# Thesis ch. 4.3-4.4 (the same for every experiment).
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-3
WARMUP_EPOCHS = 10.0
TEMPERATURE = 0.1
# Supervised augmentations: gain, noise, time masks + mixup; no background
# injection. The thesis does not give mixup's Beta(alpha, alpha); 0.5 here.
SUPERVISED_AUGMENTATIONS = "no_mix"
MIXUP_ALPHA = 0.5


def parse_arg(arg, **defaults) -> Dict[str, Any]:
  """'k1=v1,k2=v2' -> dict over ``defaults``, values cast to the defaults' types.

  Raises:
    UserError (a ValueError): an unknown key, a malformed item or an
      uncastable value.
  """
  out = dict(defaults)
  if not arg:
    return out
  for item in str(arg).split(","):
    item = item.strip()
    if not item:
      continue
    if "=" not in item:
      raise UserError(f"config arg item {item!r} is not key=value "
                      f"(keys: {sorted(defaults)})")
    key, value = (s.strip() for s in item.split("=", 1))
    if key not in defaults:
      raise UserError(f"unknown config arg {key!r}; choose from "
                      f"{sorted(defaults)}")
    kind = type(defaults[key])
    if kind is bool:
      if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise UserError(f"config arg {key}={value!r} is not a boolean")
      out[key] = value.lower() in ("true", "1", "yes")
    else:
      try:
        out[key] = kind(value)
      except ValueError:
        raise UserError(
            f"config arg {key}={value!r} is not a {kind.__name__}") from None
  return out


def check_choice(name: str, value, choices) -> None:
  if value not in choices:
    raise UserError(f"{name}={value!r}; choose from {sorted(choices)}")


def augment_config(aug: str = "all") -> ml_collections.ConfigDict:
  """The thesis' four augmentations (PIPELINE's AugmentConfig fields)."""
  check_choice("aug", aug, AUGMENTATION_SETS)
  on = AUGMENTATION_SETS[aug]
  return ml_collections.ConfigDict(dict(
      gain_db=(-18.0, 6.0), gain_p=0.5,
      noise_range=(0.001, 0.015), noise_p=0.5,
      max_time_masks=2, max_mask_seconds=0.5,
      mix_snr_db=(10.0, 25.0), mix_p=0.5,
      use_gain="gain" in on, use_noise="noise" in on,
      use_masks="masks" in on, use_mix="mix" in on))


def base_config() -> ml_collections.ConfigDict:
  """Fields every config has, with neutral defaults."""
  c = ml_collections.ConfigDict()
  c.task = "supervised"           # 'simclr' | 'supervised'
  c.seed = 0
  c.model = "cnn12"               # one of models.registry.TRAINABLE
  c.dropout = 0.4                 # before the embedding Dense

  # Data (sonify_jax.data.catalog.get_source).
  c.dataset = "embedded"
  c.data_dir = ""                 # '' = the catalog's default
  c.train_split = "train"
  c.eval_split = "validation"     # during training: model selection
  c.test_split = "test"           # once, at the end, on the best checkpoint
  c.crop_seconds = 2.5
  c.num_crops = 1                 # 2 for SimCLR: two non-overlapping crops
  c.disjoint_crops = True         # SimCLR crops never overlap (thesis)

  # Optimisation.
  c.batch_size = 256              # global
  c.num_epochs = 100
  c.total_steps = -1              # -1: num_epochs * len(train) // batch_size
  c.warmup_epochs = WARMUP_EPOCHS
  c.warmup_steps = -1             # -1: from warmup_epochs
  c.learning_rate = LEARNING_RATE
  c.weight_decay = WEIGHT_DECAY
  c.decoupled_weight_decay = False
  c.clip_norm = 0.0               # global-norm gradient clipping; 0 = off
  # Convolutions and matmuls in this dtype ('bfloat16' on TPU); params,
  # optimiser state and losses stay float32; sonify() is always float32.
  c.compute_dtype = "float32"

  # SimCLR.
  c.temperature = TEMPERATURE
  c.proj_hidden = 512
  c.proj_out = 512

  # Supervised.
  c.mixup_alpha = 0.0             # 0 = off
  c.init = "scratch"              # informational: scratch|contrastive|supervised
  c.init_from = ""                # workdir/checkpoint dir to take the encoder of
  c.init_step = -1                # -1: its latest checkpoint
  c.freeze_encoder = False        # True: linear eval ('fconly')

  c.augment = augment_config("all")

  # Evaluation (whole clips).
  c.eval_every_steps = 0          # 0: only at the end
  c.eval_batch_size = 64
  c.eval_max_seconds = 0.0        # 0: whole clips, however long

  # Checkpoints and logging.
  c.checkpoint_every_steps = 1000
  c.keep_last = 3
  c.keep_steps = ()               # never deleted (feature-evolution snapshots)
  c.best_metric = ""              # e.g. 'eval/mAP'; '' = no best tracking
  c.best_mode = "max"

  # Training health (sonify_jax.train.health): warnings, or an early stop.
  c.stop_on_collapse = False      # True: end the run (exit 2) on collapse
  c.health_patience = 3           # evaluations at chance before warning
  c.log_every_steps = 50
  c.progress = True
  c.step_delay_s = 0.0            # test hook: sleep per step (preemption tests)

  # Listening in TensorBoard (sonify_jax/train/listen.py): a fixed set of
  # (clip, layer, map) sonifications written as audio + spectrogram images.
  c.listen_clips = 2              # 0 = off
  c.listen_seconds = 2.0
  c.listen_layers = ()            # () = a middle block and the last block
  c.listen_maps = 1               # most active maps per clip and layer
  c.listen_every_steps = 0        # 0: at each evaluation (and at the end)
  return c


def finetune_mode(c: ml_collections.ConfigDict, init: str, mode: str,
                  scratch_lr: float, fconly_lr: float, full_lr: float) -> None:
  """Sets init/freeze/lr for scratch, or from another run's encoder."""
  check_choice("init", init, ("scratch", "contrastive", "supervised"))
  check_choice("mode", mode, ("fconly", "full"))
  c.init = init
  if init == "scratch":
    c.freeze_encoder = False
    c.learning_rate = scratch_lr
  else:
    # The run to start from: --config.init_from=WORKDIR (required).
    c.freeze_encoder = mode == "fconly"
    c.learning_rate = fconly_lr if mode == "fconly" else full_lr


def simclr_config(*, model: str, dataset: str, crop_seconds: float,
                  batch_size: int, tau: float, aug: str
                  ) -> ml_collections.ConfigDict:
  """SimCLR pre-training: two crops per clip, NT-Xent at ``tau``, the
  ``aug`` augmentation set; no labelled split is read while training (no
  model selection, no test)."""
  c = base_config()
  c.task = "simclr"
  c.model = model
  c.dataset = dataset
  c.train_split = "train"
  c.eval_split = ""     # no labels: nothing to select on during training
  c.test_split = ""
  c.crop_seconds = crop_seconds
  c.num_crops = 2
  c.batch_size = batch_size
  c.temperature = tau
  c.augment = augment_config(aug)
  c.eval_every_steps = 0
  c.best_metric = ""
  return c


def supervised_base(*, model: str, dataset: str, crop_seconds: float,
                    batch_size: int, eval_split: str = "validation",
                    test_split: str = "test") -> ml_collections.ConfigDict:
  """A classifier on one crop per clip with the supervised augmentations
  (gain, noise, time masks; no background injection)."""
  c = base_config()
  c.task = "supervised"
  c.model = model
  c.dataset = dataset
  c.train_split = "train"
  c.eval_split = eval_split
  c.test_split = test_split
  c.crop_seconds = crop_seconds
  c.num_crops = 1
  c.batch_size = batch_size
  c.augment = augment_config(SUPERVISED_AUGMENTATIONS)
  return c


def model_selection(c: ml_collections.ConfigDict, *, every_steps: int,
                    batch_size: int, metric: str, max_seconds: float = 0.0
                    ) -> None:
  """Evaluates ``eval_split`` and saves a checkpoint every ``every_steps``;
  the best checkpoint is the one with the highest ``metric``."""
  c.eval_every_steps = every_steps
  c.eval_batch_size = batch_size
  if max_seconds:
    c.eval_max_seconds = max_seconds
  c.checkpoint_every_steps = every_steps
  c.best_metric = metric
  c.best_mode = "max"


def demo_budget(c: ml_collections.ConfigDict, steps: int, dropout: float
                ) -> None:
  """The demos' setting: learns on the embedded data in CPU minutes.

  A step budget with 10 % warmup, a checkpoint every 100 steps (with 0.5 s
  crops and global batch 32, set by the caller).
  This narrow, normalisation-free encoder has tiny gradients, so coupled L2
  (the thesis' Adam form) dominates Adam's normalised step and shrinks the
  weights towards a constant output within a few hundred steps: the demos
  use the decoupled (AdamW) form. Masks scale with the crop (500 ms masks
  can blank a whole 0.5 s view), dropout is light or off (``dropout``) and
  gradients are clipped to norm 1.
  """
  c.total_steps = steps
  c.warmup_steps = max(1, steps // 10)
  c.checkpoint_every_steps = 100
  c.keep_last = 2
  c.log_every_steps = 10
  c.decoupled_weight_decay = True
  c.augment.max_mask_seconds = 0.1
  c.dropout = dropout
  c.clip_norm = 1.0


def supervised_config(arg, *, dataset: str, crop_seconds: float,
                      batch_size: int, num_epochs: int, fconly_epochs: int,
                      eval_batch_size: int, best_metric: str,
                      eval_every_steps: int = 2000,
                      eval_max_seconds: float = 0.0
                      ) -> ml_collections.ConfigDict:
  """The thesis' supervised setting (ch. 4.4), shared by every supervised config.

  ``arg`` takes init=scratch|contrastive|supervised, mode=fconly|full and
  model=cnn12|cnn12_x2. Adam lr 1e-3 from scratch and for fconly, 1e-4 for a
  full fine-tune; L2 1e-3; 10 warmup epochs then cosine, for every mode; gain,
  noise, time masks and mixup for every mode (linear eval included), no
  background injection. ``fconly_epochs`` sets the (shorter) linear-eval run.
  Selection on 'validation', reported once on 'test'.
  """
  a = parse_arg(arg, init="scratch", mode="full", model="cnn12")
  check_choice("model", a["model"], ("cnn12", "cnn12_x2"))
  c = supervised_base(model=a["model"], dataset=dataset,
                      crop_seconds=crop_seconds, batch_size=batch_size)
  c.num_epochs = num_epochs
  c.warmup_epochs = WARMUP_EPOCHS
  finetune_mode(c, a["init"], a["mode"], scratch_lr=LEARNING_RATE,
                fconly_lr=LEARNING_RATE, full_lr=1e-4)
  c.mixup_alpha = MIXUP_ALPHA
  if c.freeze_encoder:
    c.num_epochs = fconly_epochs
  model_selection(c, every_steps=eval_every_steps, batch_size=eval_batch_size,
                  metric=best_metric, max_seconds=eval_max_seconds)
  return c
