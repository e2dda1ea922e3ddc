"""CNN12 on VoxCeleb1 speaker identification (1251 speakers, softmax CE).

Args (comma-separated):
  init: scratch (default) | contrastive | supervised (the latter two need
    ``--config.init_from=WORKDIR``).
  mode: fconly | full (default); ignored for scratch.
  model: cnn12 (default) | cnn12_x2.

Setting: 2.5 s crops for training, whole utterances (up to 20 s) for eval;
global batch 128, 50 epochs (20 for fconly), Adam lr 1e-3 (1e-4 full
fine-tune) with L2 1e-3, 10 warmup epochs (2 for fconly), cosine; no mixup.
Eval accuracy on the test split.
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "sonify_configs_common",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "common.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def get_config(arg=None):
  a = common.parse_arg(arg, init="scratch", mode="full", model="cnn12")
  common.check_choice("model", a["model"], ("cnn12", "cnn12_x2"))
  c = common.base_config()
  c.task = "supervised"
  c.model = a["model"]
  c.dataset = "voxceleb1"
  c.train_split = "train"
  c.eval_split = "test"
  c.crop_seconds = 2.5
  c.num_crops = 1
  c.batch_size = 128
  c.num_epochs = 50
  c.warmup_epochs = 10.0
  common.finetune_mode(c, a["init"], a["mode"], scratch_lr=1e-3,
                       fconly_lr=1e-3, full_lr=1e-4)
  if c.freeze_encoder:
    c.num_epochs = 20
    c.warmup_epochs = 2.0
  c.mixup_alpha = 0.0
  c.eval_every_steps = 2000
  c.eval_batch_size = 32
  c.eval_max_seconds = 20.0
  c.checkpoint_every_steps = 2000
  c.best_metric = "eval/accuracy"
  c.best_mode = "max"
  return c
