"""Demo: SimCLR on the embedded data with a narrow CNN12, a few minutes on CPU.

Args (comma-separated):
  model: cnn12_tiny (default) | cnn12_small | cnn12.
  tau: NT-Xent temperature (default 0.2).
  aug: augmentation set as in simclr_audioset.py (default all).
  steps: training steps (default 300; the demo story uses 800).

How and why it differs from configs/simclr_audioset.py (the thesis): it must
run in CPU minutes on the embedded data, so a narrow encoder, 0.5 s crops,
global batch 32, a step budget with 10 % warmup, AdamW, short time masks, no
dropout, clipped gradients and the two views cut independently (they may
overlap) instead of from disjoint parts of the clip (reasons in get_config).
Like the thesis it evaluates no labelled split while training and never reads
'test'. ``benchmarks/probe_bench.py`` measures what it learns (a linear probe
against its own untrained init).

Then train a classifier on its encoder with
``configs/demo_supervised.py:init=contrastive --config.init_from=WORKDIR``.
"""
from sonify_jax.config_files import common


def get_config(arg=None):
  a = common.parse_arg(arg, model="cnn12_tiny", tau=0.2, aug="all", steps=300)
  common.check_choice("model", a["model"], common.TRAINABLE)
  c = common.simclr_config(model=a["model"], dataset="embedded",
                           crop_seconds=0.5, batch_size=32, tau=a["tau"],
                           aug=a["aug"])
  # Measured on a fixed batch of the embedded data (cnn12_tiny): dropout 0.4
  # on 128 pooled features drowns the clip-to-clip differences (the loss
  # stays at chance), and 500 ms masks can blank a whole 0.5 s view (a zero
  # embedding, whose normalisation gives a ~1e5 gradient that stalls Adam):
  # demo_budget scales the masks; dropout is off.
  common.demo_budget(c, a["steps"], dropout=0.0)
  c.proj_hidden = 128
  c.proj_out = 64
  c.learning_rate = 2e-3
  c.keep_steps = (0, 100, 200, 400)   # for the feature-evolution figure
  # The thesis cuts the two views from disjoint parts of 10 s AudioSet clips.
  # The embedded keywords are 1 s long, so two disjoint 0.5 s crops are the
  # two halves: often the word and the silence beside it, which share only
  # the clip's noise floor, and SimCLR learns to match noise floors. Cut
  # independently (two views of mostly the same moment, as image SimCLR
  # crops one picture twice), the linear probe on block-11 means gains
  # (benchmarks/probe_bench.py; 300 steps, seed 0: +10 points over the
  # untrained init with disjoint crops, +16 with independent ones; with
  # disjoint crops 800 steps stalled near the chance loss, +1 point). As the
  # demo runs it (800 steps, seeds 0-2): trained 0.49 +- 0.06, untrained
  # init 0.39 +- 0.09, difference +10.0 +- 3.1 points (95 % t-intervals).
  c.disjoint_crops = False
  return c
