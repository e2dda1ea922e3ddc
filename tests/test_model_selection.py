"""Model selection on validation, test once: the trainer picks the best
checkpoint on ``eval_split`` and reads ``test_split`` only at the end."""
import json
import os

import pytest

from sonify_jax.data import catalog
from sonify_jax.train import checkpoints
from sonify_jax.train import evaluate
from sonify_jax.train import logging_utils
from sonify_jax.train import steps
from sonify_jax.train import trainer

from test_configs import load as load_config
from test_trainer import _clips, _quiet


class _Recording:
  """A ClipSource that logs every read as (split, index) into ``log``."""

  def __init__(self, source, split, log):
    self._source, self._split, self._log = source, split, log
    self.name, self.split = "recorded", split
    self.num_classes = source.num_classes
    self.multilabel = source.multilabel
    self.class_names = source.class_names

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    self._log.append(("read", self._split))
    return self._source[index]


@pytest.fixture(scope="module")
def selected_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("selection"))
  log = []
  splits = {"train": _clips(24, seed=10), "validation": _clips(9, seed=11),
            "test": _clips(7, seed=12)}

  def get_source(name, split, data_dir=None):
    del name, data_dir
    log.append(("get_source", split))
    return _Recording(splits[split], split, log)

  c = _quiet(load_config("demo_supervised.py", "steps=6"))
  c.batch_size = 8
  c.eval_every_steps = 2
  c.checkpoint_every_steps = 2
  c.keep_last = 1   # the best must survive rotation to be tested
  c.keep_steps = ()
  c.log_every_steps = 2
  c.eval_batch_size = 8
  c.best_metric = "eval/mAP"
  c.listen_clips = 0  # not what this test is about
  original = catalog.get_source
  catalog.get_source = get_source
  try:
    final = trainer.train_and_evaluate(c, workdir)
  finally:
    catalog.get_source = original
  return workdir, final, log, splits, c


def test_test_split_is_read_only_after_training(selected_run):
  _, _, log, _, _ = selected_run
  reads = [split for kind, split in log if kind == "read"]
  assert {"train", "validation", "test"} <= set(reads)
  first_test = reads.index("test")
  # Every test read comes after every train and validation read, and the
  # test source is not even opened before then.
  assert set(reads[first_test:]) == {"test"}
  opened = [split for kind, split in log if kind == "get_source"]
  assert opened[-1] == "test" and opened.count("test") == 1
  assert log.index(("get_source", "test")) > max(
      i for i, (kind, split) in enumerate(log)
      if kind == "read" and split != "test")


def test_best_validation_checkpoint_is_tested_once(selected_run):
  workdir, final, _, splits, c = selected_run
  records = logging_utils.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  val = {r["step"]: r["eval/mAP"] for r in records if "eval/mAP" in r}
  assert sorted(val) == [2, 4, 6]
  with open(os.path.join(workdir, trainer.FINAL_METRICS)) as f:
    report = json.load(f)
  assert report["split"] == "test" and report["selected_on"] == "validation"
  assert report["selected_by"] == "eval/mAP"
  assert val[report["step"]] == max(val.values())
  assert not any(k.startswith("test/") for r in records for k in r)
  # Scored independently: the checkpoint of that step on the test clips.
  raw = checkpoints.load_state(workdir, step=report["step"])
  model = trainer.build_model(c, num_classes=3)
  eval_step = steps.make_eval_step(model, steps.make_mesh(), False)
  expected = evaluate.evaluate(eval_step, raw["params"], splits["test"],
                               arch_name=c.model, batch_size=8,
                               multilabel=False, prefix="test/")
  for key in ("test/accuracy", "test/mAP", "test/num_clips"):
    assert report["metrics"][key] == pytest.approx(expected[key], abs=1e-6)
    assert final[key] == report["metrics"][key]
  assert report["metrics"]["test/num_clips"] == 7


def test_selecting_on_the_test_split_is_refused():
  c = load_config("demo_supervised.py")
  c.eval_split = c.test_split
  with pytest.raises(ValueError, match="validation"):
    trainer.validate_config(c, num_devices=8)
