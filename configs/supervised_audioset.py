"""Supervised CNN12 on AudioSet (527 classes, multilabel BCE): thesis ch. 4.4.

Args (comma-separated):
  init: scratch (default) | contrastive | supervised -- where the encoder
    starts; for the latter two pass the source run with
    ``--config.init_from=WORKDIR`` (e.g. a simclr_audioset.py run).
  mode: fconly (linear eval: encoder frozen, only the linear head trains) |
    full (fine-tune everything; default). Ignored for scratch.
  model: cnn12 (default) | cnn12_x2.

Setting (thesis ch. 4.4 table): global batch 1024 = 128 per core on a TPU
v3-8; 5 s random crops; random gain, Gaussian noise, time masks and mixup
(alpha 0.5) in every mode, no background injection; Adam lr 1e-3 (1e-4 full
fine-tune) with L2 1e-3, 10 warmup epochs then cosine; 50 epochs (20 fconly).
Model selection on 'validation', the deterministic 10 % holdout of the train
clips (by clip-id hash; training uses the other 90 %, catalog 'train');
reported once on the eval set ('test'): mAP, mAUC, d-prime of whole clips.
"""
from sonify_jax.config_files import common


def get_config(arg=None):
  c = common.supervised_config(
      arg, dataset="audioset", crop_seconds=5.0, batch_size=1024,
      num_epochs=50, fconly_epochs=20, eval_batch_size=64,
      best_metric="eval/mAP")
  # Kept for the feature-evolution analysis (thesis 5.3.3).
  c.keep_steps = (0, 1000, 5000, 20000)
  return c
