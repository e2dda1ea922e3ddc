"""CNN12 on FSD50K (200 classes, multilabel BCE): thesis ch. 4.4.

Args (comma-separated):
  init: scratch (default) | contrastive | supervised (the latter two need
    ``--config.init_from=WORKDIR`` of a simclr_audioset / supervised_audioset
    run).
  mode: fconly | full (default); ignored for scratch.
  model: cnn12 (default) | cnn12_x2.

Setting (thesis ch. 4.4 table): global batch 64 (the thesis ran it on one
core; on a TPU v3-8 that is 8 per core); 2.5 s random crops; random gain,
Gaussian noise, time masks and mixup (alpha 0.5) in every mode, no
background injection; Adam lr 1e-3 (1e-4 full fine-tune) with L2 1e-3, 10
warmup epochs then cosine; 100 epochs (30 fconly). Model selection on the
official validation split; reported once on the eval ('test') split, whole
clips up to 30 s: mAP, mAUC, d-prime.
"""
from sonify_jax.config_files import common


def get_config(arg=None):
  return common.supervised_config(
      arg, dataset="fsd50k", crop_seconds=2.5, batch_size=64, num_epochs=100,
      fconly_epochs=30, eval_batch_size=32, best_metric="eval/mAP",
      eval_max_seconds=30.0)
