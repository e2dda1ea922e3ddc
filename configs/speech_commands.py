"""CNN12 on Speech Commands v2 (35 keywords, softmax CE): thesis ch. 4.4.

Args (comma-separated):
  init: scratch (default) | contrastive | supervised (the latter two need
    ``--config.init_from=WORKDIR``).
  mode: fconly | full (default); ignored for scratch.
  model: cnn12 (default) | cnn12_x2.
  task: 35 (default: the thesis' 35 words) | 12 (the official 12-class task:
    10 words, _unknown_, _silence_ cut from _background_noise_; dataset
    'speech_commands12', see sonify_jax/data/builders/speech_commands.py).

Setting (thesis ch. 4.4 table): global batch 128 (16 per core on a TPU
v3-8); no cropping: each 1 s clip (8000 samples at 8 kHz, above CNN12's
2370-sample receptive field) is used whole; random gain, Gaussian noise,
time masks and mixup (alpha 0.5) in every mode, no background injection;
Adam lr 1e-3 (1e-4 full fine-tune) with coupled L2 1e-3, 10 warmup epochs
then cosine; 30 epochs (20 fconly). Model selection on the official
validation split (accuracy); reported once on the test split.

On a small labelled set the coupled L2 can win over the tiny gradients of
this normalisation-free encoder (see sonify_jax.train.health, which says so
when it happens); ``--config.decoupled_weight_decay=True`` is the knob.
"""
from sonify_jax.config_files import common


TASKS = {"35": "speech_commands", "12": "speech_commands12"}


def get_config(arg=None):
  items = [i.strip() for i in str(arg or "").split(",") if i.strip()]
  task = "35"
  for item in items:
    if item.startswith("task="):
      task = item.split("=", 1)[1].strip()
  common.check_choice("task", task, TASKS)
  rest = ",".join(i for i in items if not i.startswith("task="))
  return common.supervised_config(
      rest or None, dataset=TASKS[task], crop_seconds=1.0, batch_size=128,
      num_epochs=30, fconly_epochs=20, eval_batch_size=256,
      best_metric="eval/accuracy")
