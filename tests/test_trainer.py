"""Trainer: linear eval from a checkpoint, whole-clip eval, logging, retention.

Uses cnn12_tiny on a few short synthetic clips with the 8 virtual devices of
conftest.py.
"""
import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sonify_jax import deconvnet
from sonify_jax.data.sources import ArraySource
from sonify_jax.models.registry import get_network
from sonify_jax.train import checkpoints
from sonify_jax.train import evaluate
from sonify_jax.train import listen
from sonify_jax.train import logging_utils
from sonify_jax.train import state as state_lib
from sonify_jax.train import steps
from sonify_jax.train import trainer

from test_configs import load as load_config

TRAIN_TAGS = {"train/loss", "train/learning_rate", "train/clips_per_sec"}
EVAL_TAGS = {"eval/mAP", "eval/mAUC", "eval/d_prime", "eval/accuracy"}


def _clips(n, seed, low=4800, high=9000, num_classes=3):
  """Noisy tones whose pitch is the class, of random lengths."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, n)
  audios = []
  for label in labels:
    t = np.arange(rng.integers(low, high)) / 8000.0
    tone = np.sin(2 * np.pi * (300 + 400 * label) * t)
    audios.append((0.3 * tone + 0.05 * rng.standard_normal(len(t)))
                  .astype(np.float32))
  return ArraySource(audios, list(labels), num_classes)


def _quiet(c):
  """No progress bar; augmentations off (not what these tests are about, and
  compiling them is most of the cost; test_resume.py runs them)."""
  c.progress = False
  for name in ("gain", "noise", "masks", "mix"):
    c.augment[f"use_{name}"] = False
  return c


@pytest.fixture(scope="module")
def simclr_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("simclr"))
  c = _quiet(load_config("demo_simclr.py", "steps=6"))
  c.batch_size = 8
  c.checkpoint_every_steps = 3
  c.log_every_steps = 2
  final = trainer.train_and_evaluate(c, workdir,
                                     train_source=_clips(16, seed=0))
  return workdir, final


@pytest.fixture(scope="module")
def fconly_run(simclr_run, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("fconly"))
  c = _quiet(load_config("demo_supervised.py", "init=contrastive,steps=4"))
  c.init_from = simclr_run[0]
  c.batch_size = 8
  c.eval_every_steps = 2
  c.eval_batch_size = 8
  c.checkpoint_every_steps = 2
  c.log_every_steps = 2
  final = trainer.train_and_evaluate(c, workdir,
                                     train_source=_clips(16, seed=1),
                                     eval_source=_clips(10, seed=2),
                                     test_source=_clips(6, seed=4))
  return workdir, final


def test_simclr_run_checkpoints_and_encoder(simclr_run):
  workdir, final = simclr_run
  assert np.isfinite(final["train/loss"])
  steps_on_disk = checkpoints.available_steps(workdir)
  assert steps_on_disk == [0, 3, 6]  # 0 is a keep_step of the demo config
  info = checkpoints.load_run_info(workdir)
  assert info["arch"] == "cnn12_tiny" and info["task"] == "simclr"
  encoder, arch_name = checkpoints.load_encoder(workdir)
  initial, _ = checkpoints.load_encoder(workdir, step=0)
  arch = get_network(arch_name)
  # Training moved the encoder, and the loaded tree is what sonify expects.
  assert not np.allclose(encoder["block1"]["kernel"],
                         initial["block1"]["kernel"])
  assert encoder["block11"]["kernel"].shape == (3, arch.channels[9],
                                                arch.channels[10])
  audio = np.random.default_rng(0).standard_normal((1, 4000)).astype(
      np.float32)
  out = deconvnet.sonify(encoder, audio, 3, [0], arch=arch)
  assert out.shape == (1, 1, 4000) and np.all(np.isfinite(out))
  with pytest.raises(ValueError, match="step 5"):
    checkpoints.load_encoder(workdir, step=5)


def test_fconly_keeps_source_encoder(simclr_run, fconly_run):
  source_encoder, _ = checkpoints.load_encoder(simclr_run[0])
  encoder, _ = checkpoints.load_encoder(fconly_run[0])
  jax.tree.map(np.testing.assert_array_equal, encoder, source_encoder)
  raw = checkpoints.load_state(fconly_run[0])
  first = checkpoints.load_state(fconly_run[0], step=2)
  # ...while the head did train.
  assert int(raw["step"]) == 4
  assert not np.allclose(raw["params"]["head"]["logits"]["kernel"],
                         first["params"]["head"]["logits"]["kernel"])


def test_init_from_wrong_architecture_is_an_error(simclr_run, tmp_path):
  c = _quiet(load_config("demo_supervised.py",
                         "init=contrastive,model=cnn12_small,steps=2"))
  c.init_from = simclr_run[0]
  c.batch_size = 8
  with pytest.raises(ValueError, match="cnn12_tiny"):
    trainer.train_and_evaluate(c, str(tmp_path),
                               train_source=_clips(8, seed=3),
                               eval_source=_clips(8, seed=3))


def test_metrics_jsonl_and_tensorboard_events(fconly_run):
  workdir, final = fconly_run
  records = logging_utils.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  by_step = {}
  for r in records:
    by_step.setdefault(r["step"], {}).update(r)
  assert sorted(by_step) == [2, 4]
  for step in (2, 4):
    assert TRAIN_TAGS | EVAL_TAGS <= set(by_step[step])
  assert final["eval/accuracy"] == by_step[4]["eval/accuracy"]
  # The logged mAP is the step-4 checkpoint's, computed another way: each
  # eval clip scored alone (whole, unpadded) by the saved classifier, ranked
  # by sklearn (the trainer pads clips into batches and masks the padding).
  from sklearn.metrics import average_precision_score  # pylint: disable=g-import-not-at-top
  from sonify_jax.analysis.studies import residual  # pylint: disable=g-import-not-at-top
  saved = checkpoints.load_state(workdir, step=4)["params"]
  score = residual.make_classifier_fn(saved["encoder"], saved["head"],
                                      get_network("cnn12_tiny"), False)
  source = _clips(10, seed=2)
  scores = np.concatenate([score(source[i]["audio"][None])
                           for i in range(len(source))])
  hot = np.eye(3)[[source[i]["label"] for i in range(len(source))]]
  want = np.mean([average_precision_score(hot[:, c], scores[:, c])
                  for c in range(3) if hot[:, c].any()])
  assert by_step[4]["eval/mAP"] == pytest.approx(want, abs=1e-6)
  assert by_step[4]["eval/num_clips"] == 10

  event_files = glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
  assert len(event_files) == 1
  acc = _events(workdir)
  tags_by_step = {}
  for tag in acc.Tags()["scalars"]:
    for event in acc.Scalars(tag):
      tags_by_step.setdefault(event.step, {})[tag] = event.value
  assert TRAIN_TAGS | EVAL_TAGS <= set(tags_by_step[2])
  assert TRAIN_TAGS | EVAL_TAGS <= set(tags_by_step[4])
  for tag in TRAIN_TAGS | EVAL_TAGS:
    # TensorBoard stores float32.
    # d' is +inf when a tiny eval set is perfectly separated: metrics.jsonl
    # keeps non-finite values as strings ('inf'), and inf == inf here.
    np.testing.assert_allclose(tags_by_step[4][tag], float(by_step[4][tag]),
                               rtol=1e-6, err_msg=tag)


@pytest.mark.slow   # ~30 s of compiles; the eval metrics tests are the fast path
def test_whole_clip_eval_matches_clips_alone():
  """Padded batches of mixed lengths score each clip as it scores alone."""
  model = state_lib.ClassifierModel(arch_name="cnn12_tiny", num_classes=5,
                                    multilabel=True)
  params = state_lib.init_params(model, jax.random.PRNGKey(0))
  rng = np.random.default_rng(7)
  # Distinct lengths, some below one eval length bucket, one at the
  # receptive field; batches of 4 leave padding rows in the last batch.
  lengths = [2400, 9000, 4100, 2370, 6000, 3000]
  audios = [rng.standard_normal(n).astype(np.float32) for n in lengths]
  labels = [rng.integers(0, 2, 5).astype(np.float32) for _ in lengths]
  source = ArraySource(audios, labels, 5, multilabel=True)
  eval_step = steps.make_eval_step(model, steps.make_mesh())
  scores, got_labels = evaluate.predict(eval_step, params, source,
                                        arch_name="cnn12_tiny", batch_size=4)
  assert scores.shape == (len(lengths), 5)
  np.testing.assert_array_equal(got_labels, np.stack(labels))
  apply = jax.jit(lambda p, x: jax.nn.sigmoid(
      model.apply({"params": p}, x, train=False)))
  alone = np.stack([np.asarray(apply(params, a[None]))[0] for a in audios])
  np.testing.assert_allclose(scores, alone, rtol=1e-5, atol=1e-6)
  # The test has teeth: without the mask, the padding changes the scores.
  padded = np.zeros((4, 12000), np.float32)
  for row, a in enumerate(audios[:4]):
    padded[row, :len(a)] = a
  unmasked = eval_step(params, {"audio": padded})
  assert np.abs(unmasked - alone[:4]).max() > 1e-4
  # Truncation keeps each clip's start.
  short, _ = evaluate.predict(eval_step, params, source,
                              arch_name="cnn12_tiny", batch_size=4,
                              max_samples=4000)
  alone_short = np.stack([np.asarray(apply(params, a[None, :4000]))[0]
                          for a in audios])
  np.testing.assert_allclose(short, alone_short, rtol=1e-5, atol=1e-6)


def _tiny_state(value):
  return {"step": jnp.asarray(value, jnp.int32),
          "params": {"encoder": {"w": jnp.full((3,), float(value))}}}


def test_kept_steps_survive_rotation(tmp_path):
  workdir = str(tmp_path)
  ckpt = checkpoints.Checkpointer(workdir, keep_last=2, keep_steps=(3, 7),
                                  best_metric="eval/mAP", best_mode="max")
  maps = {2: 0.1, 4: 0.9, 6: 0.3, 8: 0.2, 10: 0.4}
  for step in range(1, 11):
    metrics = {"eval/mAP": maps[step]} if step in maps else None
    ckpt.save(step, _tiny_state(step), metrics=metrics)
  ckpt.close()
  # last 2 (9, 10) + best (4) + keep_steps (3, 7).
  assert checkpoints.available_steps(workdir) == [3, 4, 7, 9, 10]
  # A restarted run (new manager on the same dir) keeps honouring them.
  ckpt = checkpoints.Checkpointer(workdir, keep_last=2, keep_steps=(3, 7),
                                  best_metric="eval/mAP", best_mode="max")
  for step in range(11, 15):
    ckpt.save(step, _tiny_state(step))
  restored = ckpt.restore(_tiny_state(0), step=7)
  ckpt.close()
  assert checkpoints.available_steps(workdir) == [3, 4, 7, 13, 14]
  np.testing.assert_array_equal(restored["params"]["encoder"]["w"],
                                np.full(3, 7.0))


def test_best_mode_min(tmp_path):
  ckpt = checkpoints.Checkpointer(str(tmp_path), keep_last=1,
                                  best_metric="loss", best_mode="min")
  for step, loss in [(1, 3.0), (2, 1.0), (3, 2.0), (4, 5.0)]:
    ckpt.save(step, _tiny_state(step), metrics={"loss": loss})
  ckpt.close()
  assert checkpoints.available_steps(str(tmp_path)) == [2, 4]


def test_missing_checkpoints_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="run.json"):
    checkpoints.load_encoder(str(tmp_path))
  with pytest.raises(FileNotFoundError):
    checkpoints.available_steps(str(tmp_path / "nope"))


# --- TensorBoard events read back with TensorBoard's own reader -------------


def _events(workdir):
  from tensorboard.backend.event_processing import event_accumulator as ea  # pylint: disable=g-import-not-at-top
  acc = ea.EventAccumulator(workdir, size_guidance={
      ea.SCALARS: 0, ea.AUDIO: 0, ea.IMAGES: 0})
  acc.Reload()
  return acc


def _decode_wav(encoded):
  import io  # pylint: disable=g-import-not-at-top
  import soundfile  # pylint: disable=g-import-not-at-top
  audio, rate = soundfile.read(io.BytesIO(encoded), dtype="float32")
  return audio, rate


def test_listening_summaries_are_the_sonifications_of_each_step(simclr_run):
  """Audio summaries hold sonify() of the checkpoint of their step, for the
  saved (clip, layer, map) set, which is the starting encoder's strongest
  maps of the first clips; each has a spectrogram image."""
  workdir, _ = simclr_run
  with open(os.path.join(workdir, listen.LISTEN_SET_FILE)) as f:
    saved = json.load(f)
  arch = get_network("cnn12_tiny")
  assert saved["layers"] == [6, 11] and saved["indices"] == [0, 1]
  source = _clips(16, seed=0)
  length = saved["length"]
  assert length == min(len(source[i]["audio"]) for i in (0, 1))
  clips = np.stack([source[i]["audio"][:length] for i in (0, 1)])
  initial, _ = checkpoints.load_encoder(workdir, step=0)
  for l, layer in enumerate(saved["layers"]):
    strength = np.asarray(deconvnet.feature_map_activations(
        initial, clips, layer, arch))
    for c in range(2):
      assert saved["maps"][c][l] == [int(np.argmax(strength[c]))]

  acc = _events(workdir)
  tags = acc.Tags()
  expected = {listen.tag(c, layer, saved["maps"][c][l][0])
              for c in range(2) for l, layer in enumerate(saved["layers"])}
  assert expected <= set(tags["audio"])
  assert expected <= set(tags["images"])
  assert {"listen/clip0/input", "listen/clip1/input"} <= set(tags["audio"])
  heard = {}
  for step in (0, 6):
    encoder, _ = checkpoints.load_encoder(workdir, step=step)
    for c in range(2):
      for l, layer in enumerate(saved["layers"]):
        m = saved["maps"][c][l][0]
        (event,) = [e for e in acc.Audio(listen.tag(c, layer, m))
                    if e.step == step]
        assert event.sample_rate == 8000
        audio, rate = _decode_wav(event.encoded_audio_string)
        assert rate == 8000 and audio.shape == (length,)
        want = np.asarray(deconvnet.sonify(encoder, clips[c:c + 1], layer,
                                           [m], arch))[0, 0]
        # 16-bit WAV: within one quantisation step.
        np.testing.assert_allclose(audio, want, atol=2.0 / 32768)
        heard[(step, c, layer)] = audio
        (image,) = [e for e in acc.Images(listen.tag(c, layer, m))
                    if e.step == step]
        assert image.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"
        assert image.width > 100 and image.height > 50
  # Training changed what the maps sound like.
  assert any(np.abs(heard[(0, c, 11)] - heard[(6, c, 11)]).max() > 1e-3
             for c in range(2))


def test_metric_writer_disabled_on_other_processes(tmp_path):
  writer = logging_utils.MetricWriter(str(tmp_path), enabled=False)
  writer.write_scalars(1, {"a": 1.0})
  writer.close()
  assert os.listdir(tmp_path) == []


def test_metric_writer_keeps_nan_visible(tmp_path):
  writer = logging_utils.MetricWriter(str(tmp_path))
  writer.write_scalars(3, {"a": float("nan"), "b": np.float32(2.0)})
  writer.close()
  (record,) = logging_utils.read_jsonl(str(tmp_path / "metrics.jsonl"))
  assert record["a"] == "nan" and record["b"] == 2.0
  json.dumps(record)


def test_resuming_a_different_run_is_refused(simclr_run, tmp_path):
  c = _quiet(load_config("demo_simclr.py", "model=cnn12_small,steps=8"))
  c.batch_size = 8
  with pytest.raises(ValueError, match="fresh --workdir"):
    trainer.train_and_evaluate(c, simclr_run[0],
                               train_source=_clips(8, seed=4))
