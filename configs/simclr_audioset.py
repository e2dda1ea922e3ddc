"""SimCLR pre-training of CNN12 on AudioSet: thesis ch. 4.3, Table 4.1.

Two non-overlapping 2.5 s crops per clip, the four augmentations, CNN12 +
projection MLP (512-512), NT-Xent over the global batch.

Args (``--config=configs/simclr_audioset.py:ARG``, comma-separated):
  tau: NT-Xent temperature, 0.1 (default) / 0.2 / 0.3.
  aug: augmentations: all (default), no_gain, no_noise, no_mask, no_mix,
    only_gain, only_noise, only_mask, only_mix, none.
  model: cnn12 (default) or cnn12_x2.

Setting (thesis ch. 4.3): global batch 2048 clips = 256 per core on a TPU
v3-8 (4096 views; NT-Xent over all of them), two non-overlapping 2.5 s crops,
gain + noise + time masks + background injection at 10-25 dB SNR, tau 0.1,
100 epochs, Adam lr 1e-3 with L2 1e-3, 10 warmup epochs then cosine. Trains
on catalog 'train' (AudioSet train minus the 10 % 'validation' holdout that
the supervised runs select on). No labelled eval or test during
pre-training: judge the encoder by linear eval,
configs/supervised_audioset.py:init=contrastive,mode=fconly.
"""
from sonify_jax.config_files import common


def get_config(arg=None):
  a = common.parse_arg(arg, tau=0.1, aug="all", model="cnn12")
  common.check_choice("model", a["model"], ("cnn12", "cnn12_x2"))
  c = common.simclr_config(model=a["model"], dataset="audioset",
                           crop_seconds=2.5, batch_size=2048, tau=a["tau"],
                           aug=a["aug"])
  c.num_epochs = 100
  c.checkpoint_every_steps = 2000
  c.keep_last = 3
  # Snapshots for the feature-evolution analysis (listened to in ch. 5).
  c.keep_steps = (0, 1000, 5000, 10000, 20000, 50000, 100000)
  return c
