"""Demo: a classifier on the embedded data with a narrow CNN12, CPU minutes.

Args (comma-separated):
  init: scratch (default) | contrastive (needs
    ``--config.init_from=WORKDIR`` of a demo_simclr.py run).
  mode: fconly (default for contrastive: linear eval) | full.
  model: cnn12_tiny (default) | cnn12_small | cnn12 (must match init_from's).
  steps: training steps (default 300; the demo story uses 800).

How and why it differs from the thesis configs (speech_commands.py etc.):
it must learn in CPU minutes on the embedded data (304 train clips), so
cnn12_tiny, 0.5 s crops, global batch 32, a step budget (warmup 10 % of the
steps, not 10 epochs), lr 2e-3 (1e-2 for linear eval), decoupled weight decay
(AdamW; see below), time masks <= 0.1 s, dropout 0.1, gradients clipped to
norm 1, no mixup. As in the thesis: gain + noise + time masks, no background
injection; the best checkpoint is picked on the embedded 'validation' holdout
(voices / source files never in 'train') and 'test' is scored once at the end.
"""
from sonify_jax.config_files import common


def get_config(arg=None):
  a = common.parse_arg(arg, init="scratch", mode="fconly", model="cnn12_tiny",
                       steps=300)
  common.check_choice("model", a["model"], common.TRAINABLE)
  common.check_choice("init", a["init"], ("scratch", "contrastive"))
  c = common.supervised_base(model=a["model"], dataset="embedded",
                             crop_seconds=0.5, batch_size=32)
  common.demo_budget(c, a["steps"], dropout=0.1)  # light: a narrow model
  common.finetune_mode(c, a["init"], a["mode"], scratch_lr=2e-3,
                       fconly_lr=1e-2, full_lr=1e-3)
  c.mixup_alpha = 0.0   # no mixup (the thesis configs use it)
  common.model_selection(c, every_steps=100, batch_size=32,
                         metric="eval/accuracy", max_seconds=5.0)
  return c
