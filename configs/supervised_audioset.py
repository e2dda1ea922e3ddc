"""Supervised CNN12 on AudioSet (527 classes, multilabel BCE), thesis ch. 4.

Args (comma-separated):
  init: scratch (default) | contrastive | supervised -- where the encoder
    starts; for the latter two pass the source run with
    ``--config.init_from=WORKDIR`` (e.g. a simclr_audioset.py run).
  mode: fconly (linear eval: encoder frozen, only the linear head trains) |
    full (fine-tune everything; default). Ignored for scratch.
  model: cnn12 (default) | cnn12_x2.

Setting: global batch 256, 2.5 s crops, mixup (alpha 0.5) when the encoder
trains, 50 epochs (20 for fconly), Adam (lr 1e-3 scratch / 1e-4 full
fine-tune / 1e-3 fconly) with L2 1e-3, 10 warmup epochs (2 for fconly) then
cosine. Whole-clip eval on the eval split: mAP, mAUC, d-prime.
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
  c.dataset = "audioset"
  c.train_split = "train"
  c.eval_split = "eval"
  c.crop_seconds = 2.5
  c.num_crops = 1
  c.batch_size = 256
  c.num_epochs = 50
  c.warmup_epochs = 10.0
  common.finetune_mode(c, a["init"], a["mode"], scratch_lr=1e-3,
                       fconly_lr=1e-3, full_lr=1e-4)
  c.mixup_alpha = 0.0 if c.freeze_encoder else 0.5
  if c.freeze_encoder:
    c.num_epochs = 20
    c.warmup_epochs = 2.0
  c.eval_every_steps = 5000
  c.eval_batch_size = 64
  c.checkpoint_every_steps = 5000
  c.best_metric = "eval/mAP"
  c.best_mode = "max"
  c.keep_steps = (0, 1000, 5000, 20000)
  return c
