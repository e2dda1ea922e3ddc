"""Trainer: linear eval from a checkpoint, whole-clip eval, logging, retention.

Uses cnn12_tiny on a few short synthetic clips with the 8 virtual devices of
conftest.py.
"""
import glob
import json
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sonify_jax import deconvnet
from sonify_jax.data.sources import ArraySource
from sonify_jax.models.architecture import get_architecture
from sonify_jax.train import checkpoints
from sonify_jax.train import evaluate
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
                                     eval_source=_clips(10, seed=2))
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
  arch = get_architecture(arch_name)
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
  assert 0.0 <= by_step[4]["eval/mAP"] <= 1.0
  assert by_step[4]["eval/num_clips"] == 10

  event_files = glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
  assert len(event_files) == 1
  scalars = logging_utils.read_event_scalars(event_files[0])
  tags_by_step = {}
  for step, tag, value in scalars:
    tags_by_step.setdefault(step, {})[tag] = value
  assert TRAIN_TAGS | EVAL_TAGS <= set(tags_by_step[2])
  assert TRAIN_TAGS | EVAL_TAGS <= set(tags_by_step[4])
  for tag in TRAIN_TAGS | EVAL_TAGS:
    # TensorBoard stores float32.
    # d' is +inf when a tiny eval set is perfectly separated: metrics.jsonl
    # keeps non-finite values as strings ('inf'), and inf == inf here.
    np.testing.assert_allclose(tags_by_step[4][tag], float(by_step[4][tag]),
                               rtol=1e-6, err_msg=tag)


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


# --- the event-file writer against independent facts ------------------------


def test_crc32c_known_answers():
  # RFC 3720 B.4 / the standard check value of CRC-32C.
  assert logging_utils.crc32c(b"123456789") == 0xE3069283
  assert logging_utils.crc32c(bytes(32)) == 0x8A9136AA
  assert logging_utils.crc32c(b"\xff" * 32) == 0x62A8AB43


def _event_message_class():
  """tensorflow.Event/Summary built from a descriptor with real protobuf."""
  pytest.importorskip("google.protobuf")
  from google.protobuf import descriptor_pb2  # pylint: disable=g-import-not-at-top
  from google.protobuf import descriptor_pool  # pylint: disable=g-import-not-at-top
  from google.protobuf import message_factory  # pylint: disable=g-import-not-at-top
  f = descriptor_pb2.FieldDescriptorProto
  fdp = descriptor_pb2.FileDescriptorProto(name="ev_test.proto",
                                           package="evtest")

  def add(msg, name, number, kind, label=f.LABEL_OPTIONAL, type_name=None):
    field = msg.field.add(name=name, number=number, type=kind, label=label)
    if type_name:
      field.type_name = type_name

  value = fdp.message_type.add(name="Value")
  add(value, "tag", 1, f.TYPE_STRING)
  add(value, "simple_value", 2, f.TYPE_FLOAT)
  summary = fdp.message_type.add(name="Summary")
  add(summary, "value", 1, f.TYPE_MESSAGE, f.LABEL_REPEATED, ".evtest.Value")
  event = fdp.message_type.add(name="Event")
  add(event, "wall_time", 1, f.TYPE_DOUBLE)
  add(event, "step", 2, f.TYPE_INT64)
  add(event, "file_version", 3, f.TYPE_STRING)
  add(event, "summary", 5, f.TYPE_MESSAGE, type_name=".evtest.Summary")
  pool = descriptor_pool.DescriptorPool()
  pool.Add(fdp)
  return message_factory.GetMessageClass(
      pool.FindMessageTypeByName("evtest.Event"))


def test_event_file_parses_with_protobuf(tmp_path):
  event_cls = _event_message_class()
  writer = logging_utils.EventFileWriter(str(tmp_path))
  writer.scalars(7, {"train/loss": 0.25, "eval/mAP": -1.5})
  writer.scalars(2 ** 40, {"x": 3.0})
  writer.close()
  data = open(writer.path, "rb").read()
  events, pos = [], 0
  while pos < len(data):
    (length,) = struct.unpack("<Q", data[pos:pos + 8])
    payload = data[pos + 12:pos + 12 + length]
    (crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
    c = logging_utils.crc32c(payload)
    assert crc == (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    events.append(event_cls.FromString(payload))
    pos += 16 + length
  assert events[0].file_version == "brain.Event:2"
  assert events[1].step == 7
  assert {v.tag: v.simple_value for v in events[1].summary.value} == {
      "train/loss": 0.25, "eval/mAP": -1.5}
  assert events[2].step == 2 ** 40 and events[2].summary.value[0].tag == "x"
  assert logging_utils.read_event_scalars(writer.path) == [
      (7, "train/loss", 0.25), (7, "eval/mAP", -1.5), (2 ** 40, "x", 3.0)]
  # A torn final record (killed writer) is ignored, not an error.
  with open(writer.path, "ab") as f:
    f.write(data[:20])
  assert len(logging_utils.read_event_scalars(writer.path)) == 3


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
