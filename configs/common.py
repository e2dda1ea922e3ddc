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
"""
import importlib.util
import os
from typing import Any, Dict

import ml_collections

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

MODELS = ("cnn12", "cnn12_x2", "cnn12_small", "cnn12_tiny")

# Thesis ch. 4.3-4.4 (the same for every experiment).
LEARNING_RATE = 1e-3
WEIGHT_DECAY = 1e-3
WARMUP_EPOCHS = 10.0
TEMPERATURE = 0.1
# Supervised augmentations: gain, noise, time masks + mixup; no background
# injection. The thesis does not give mixup's Beta(alpha, alpha); 0.5 here.
SUPERVISED_AUGMENTATIONS = "no_mix"
MIXUP_ALPHA = 0.5


def load(path: str):
  """Imports a sibling config module by file path.

  Config files are loaded by path (config_flags), not as a package, so they
  find each other this way.
  """
  full = os.path.join(os.path.dirname(os.path.abspath(__file__)), path)
  name = "sonify_configs_" + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, full)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def parse_arg(arg, **defaults) -> Dict[str, Any]:
  """'k1=v1,k2=v2' -> dict over ``defaults``, values cast to the defaults' types.

  Raises:
    ValueError: for an unknown key, a malformed item or an uncastable value.
  """
  out = dict(defaults)
  if not arg:
    return out
  for item in str(arg).split(","):
    item = item.strip()
    if not item:
      continue
    if "=" not in item:
      raise ValueError(f"config arg item {item!r} is not key=value "
                       f"(keys: {sorted(defaults)})")
    key, value = (s.strip() for s in item.split("=", 1))
    if key not in defaults:
      raise ValueError(f"unknown config arg {key!r}; choose from "
                       f"{sorted(defaults)}")
    kind = type(defaults[key])
    if kind is bool:
      if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"config arg {key}={value!r} is not a boolean")
      out[key] = value.lower() in ("true", "1", "yes")
    else:
      try:
        out[key] = kind(value)
      except ValueError:
        raise ValueError(
            f"config arg {key}={value!r} is not a {kind.__name__}") from None
  return out


def check_choice(name: str, value, choices) -> None:
  if value not in choices:
    raise ValueError(f"{name}={value!r}; choose from {sorted(choices)}")


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
  c.model = "cnn12"               # sonify_jax.models.get_architecture name
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


def supervised_config(arg, *, dataset: str, eval_split: str,
                      test_split: str, crop_seconds: float, batch_size: int,
                      num_epochs: int, fconly_epochs: int,
                      eval_every_steps: int, eval_batch_size: int,
                      best_metric: str, eval_max_seconds: float = 0.0
                      ) -> ml_collections.ConfigDict:
  """The thesis' supervised setting (ch. 4.4), shared by every supervised config.

  ``arg`` takes init=scratch|contrastive|supervised, mode=fconly|full and
  model=cnn12|cnn12_x2. Adam lr 1e-3 from scratch and for fconly, 1e-4 for a
  full fine-tune; L2 1e-3; 10 warmup epochs then cosine, for every mode; gain,
  noise, time masks and mixup for every mode (linear eval included), no
  background injection. ``fconly_epochs`` sets the (shorter) linear-eval run.
  """
  a = parse_arg(arg, init="scratch", mode="full", model="cnn12")
  check_choice("model", a["model"], ("cnn12", "cnn12_x2"))
  c = base_config()
  c.task = "supervised"
  c.model = a["model"]
  c.dataset = dataset
  c.train_split = "train"
  c.eval_split = eval_split
  c.test_split = test_split
  c.crop_seconds = crop_seconds
  c.num_crops = 1
  c.batch_size = batch_size
  c.num_epochs = num_epochs
  c.warmup_epochs = WARMUP_EPOCHS
  finetune_mode(c, a["init"], a["mode"], scratch_lr=LEARNING_RATE,
                fconly_lr=LEARNING_RATE, full_lr=1e-4)
  c.augment = augment_config(SUPERVISED_AUGMENTATIONS)
  c.mixup_alpha = MIXUP_ALPHA
  if c.freeze_encoder:
    c.num_epochs = fconly_epochs
  c.eval_every_steps = eval_every_steps
  c.eval_batch_size = eval_batch_size
  if eval_max_seconds:
    c.eval_max_seconds = eval_max_seconds
  c.checkpoint_every_steps = eval_every_steps
  c.best_metric = best_metric
  c.best_mode = "max"
  return c
