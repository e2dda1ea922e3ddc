"""CNN12 on FSD50K (200 classes, multilabel BCE), thesis ch. 4.

Args (comma-separated):
  init: scratch (default) | contrastive | supervised (the latter two need
    ``--config.init_from=WORKDIR`` of a simclr_audioset / supervised_audioset
    run).
  mode: fconly | full (default); ignored for scratch.
  model: cnn12 (default) | cnn12_x2.

Setting: global batch 128, 2.5 s crops, mixup 0.5 when the encoder trains,
100 epochs (30 for fconly), Adam lr 1e-3 (1e-4 full fine-tune) with L2 1e-3,
10 warmup epochs (3 for fconly), cosine. Whole-clip eval on the test split
(clips up to 30 s): mAP, mAUC, d-prime; best checkpoint by eval mAP.
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
  c.dataset = "fsd50k"
  c.train_split = "train"
  c.eval_split = "test"
  c.crop_seconds = 2.5
  c.num_crops = 1
  c.batch_size = 128
  c.num_epochs = 100
  c.warmup_epochs = 10.0
  common.finetune_mode(c, a["init"], a["mode"], scratch_lr=1e-3,
                       fconly_lr=1e-3, full_lr=1e-4)
  c.mixup_alpha = 0.0 if c.freeze_encoder else 0.5
  if c.freeze_encoder:
    c.num_epochs = 30
    c.warmup_epochs = 3.0
  c.eval_every_steps = 2000
  c.eval_batch_size = 32
  c.eval_max_seconds = 30.0
  c.checkpoint_every_steps = 2000
  c.best_metric = "eval/mAP"
  c.best_mode = "max"
  return c
