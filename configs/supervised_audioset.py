"""Supervised CNN12 on AudioSet (527 classes, multilabel BCE), thesis ch. 4.

Args (comma-separated):
  init: scratch (default) | contrastive | supervised -- where the encoder
    starts; for the latter two pass the source run with
    ``--config.init_from=WORKDIR`` (e.g. a simclr_audioset.py run).
  mode: fconly (linear eval: encoder frozen, only the linear head trains) |
    full (fine-tune everything; default). Ignored for scratch.
  model: cnn12 (default) | cnn12_x2.

Setting: global batch 256, 5 s crops, mixup (alpha 0.5) when the encoder
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
  c = common.supervised_config(
      arg, dataset="audioset", eval_split="eval", crop_seconds=5.0,
      batch_size=256, num_epochs=50, fconly_epochs=20,
      fconly_warmup_epochs=2.0, mixup_alpha=0.5, eval_every_steps=5000,
      eval_batch_size=64, best_metric="eval/mAP")
  # Kept for the feature-evolution analysis (thesis 5.3.3).
  c.keep_steps = (0, 1000, 5000, 20000)
  return c
