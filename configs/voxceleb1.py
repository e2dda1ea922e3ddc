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
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "sonify_configs_common",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "common.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def get_config(arg=None):
  return common.supervised_config(
      arg, dataset="voxceleb1", eval_split="validation", test_split="test",
      crop_seconds=2.5, batch_size=128, num_epochs=50, fconly_epochs=20,
      eval_every_steps=2000, eval_batch_size=32, best_metric="eval/accuracy",
      eval_max_seconds=20.0)
