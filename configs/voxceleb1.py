"""CNN12 on VoxCeleb1 speaker identification (1251 speakers, softmax CE):
thesis ch. 4.4.

Args (comma-separated):
  init: scratch (default) | contrastive | supervised (the latter two need
    ``--config.init_from=WORKDIR``).
  mode: fconly | full (default); ignored for scratch.
  model: cnn12 (default) | cnn12_x2.

Setting (thesis ch. 4.4 table): global batch 128 (16 per core on a TPU
v3-8); 2.5 s random crops for training, whole utterances (up to 20 s) for
evaluation; random gain, Gaussian noise, time masks and mixup (alpha 0.5) in
every mode, no background injection; Adam lr 1e-3 (1e-4 full fine-tune) with
L2 1e-3, 10 warmup epochs then cosine; 50 epochs (20 fconly). Model
selection on the validation split (accuracy); reported once on the test split.
"""
from sonify_jax.config_files import common


def get_config(arg=None):
  return common.supervised_config(
      arg, dataset="voxceleb1", crop_seconds=2.5, batch_size=128,
      num_epochs=50, fconly_epochs=20, eval_batch_size=32,
      best_metric="eval/accuracy", eval_max_seconds=20.0)
