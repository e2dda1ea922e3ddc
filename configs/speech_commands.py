"""CNN12 on Speech Commands v2 (35 keywords, single-label softmax CE).

Args (comma-separated):
  init: scratch (default) | contrastive | supervised (the latter two need
    ``--config.init_from=WORKDIR``).
  mode: fconly | full (default); ignored for scratch.
  model: cnn12 (default) | cnn12_x2.

Setting: 1 s clips (8000 samples at 8 kHz, above CNN12's 2370-sample
receptive field) used whole as one crop; global batch 256, 30 epochs (15 for
fconly), Adam lr 1e-3 (1e-4 full fine-tune) with L2 1e-3, 10 warmup epochs
(2 for fconly), cosine; no mixup. Eval accuracy on the test split.
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "sonify_configs_common",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "common.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def get_config(arg=None):
  return common.supervised_config(
      arg, dataset="speech_commands", eval_split="test", crop_seconds=1.0,
      batch_size=256, num_epochs=30, fconly_epochs=15,
      fconly_warmup_epochs=2.0, mixup_alpha=0.0, eval_every_steps=2000,
      eval_batch_size=256, best_metric="eval/accuracy")
