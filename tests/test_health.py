"""Training-health detectors: each fires on a planted or provoked collapse
and stays silent on a healthy run."""
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sonify_jax import cli
from sonify_jax.errors import UserError
from sonify_jax.train import health
from sonify_jax.train import logging_utils
from sonify_jax.train import losses
from sonify_jax.train import trainer

from test_configs import load as load_config
from test_trainer import _clips, _quiet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_constant_predictions():
  rng = np.random.default_rng(0)
  labels = np.arange(100) % 4
  scores = rng.random((100, 4))
  assert health.constant_predictions(scores, labels) is None
  scores[:95, 2] += 10.0  # class 2 on top for 95 % of the clips
  scores[95:, 0] += 10.0
  found = health.constant_predictions(scores, labels)
  assert found["class"] == 2 and found["share"] == pytest.approx(0.95)
  # Not a collapse when the labels themselves are that skewed.
  skewed = np.where(np.arange(100) < 95, 2, 0)
  assert health.constant_predictions(scores, skewed) is None
  # Multilabel: the top class of each row.
  multi = np.zeros((100, 4))
  multi[:, 1] = 1.0
  assert health.constant_predictions(scores, multi) is None


def test_chance_levels_match_the_losses():
  """A model that ignores its input scores exactly these losses."""
  c = 7
  assert health.chance_cross_entropy(np.ones(c)) == pytest.approx(math.log(c))
  labels = np.array([0, 0, 0, 1, 2, 2])
  prior = health.label_prior(labels, 3)
  constant = np.tile(prior, (len(labels), 1))
  assert health.eval_loss(constant, labels, False) == pytest.approx(
      health.chance_loss(labels, 3, False))
  multi = (np.random.default_rng(1).random((50, 5)) < [0.1, .2, .5, .7, .9]
           ).astype(np.float32)
  constant = np.tile(multi.mean(0), (50, 1))
  assert health.eval_loss(constant, multi, True) == pytest.approx(
      health.chance_loss(multi, 5, True), rel=1e-6)
  # NT-Xent of 2N identical views (every similarity equal) is ln(2N - 1).
  n = 16
  views = jnp.ones((n, 8))
  loss = losses.nt_xent(views, views, temperature=0.1)
  assert float(loss) == pytest.approx(health.chance_nt_xent(n), rel=1e-5)


def test_encoder_spread():
  rng = np.random.default_rng(0)
  healthy = np.abs(rng.standard_normal((16, 32)))
  assert health.collapsed_encoder(healthy) is None
  dead = np.zeros((16, 32))
  assert health.collapsed_encoder(dead)["dead_fraction"] == 1.0
  constant = np.tile(healthy[:1], (16, 1)) + 1e-7 * healthy
  assert health.collapsed_encoder(constant)["relative_spread"] < 1e-3
  partly_dead = healthy.copy()
  partly_dead[:, :20] = 0.0
  assert health.collapsed_encoder(partly_dead) is None


def test_monitor_reports_each_problem_once_after_warmup():
  said = []
  monitor = health.HealthMonitor("supervised", warmup_steps=10, patience=2,
                                 log=said.append)
  labels = np.arange(40) % 4
  constant = np.tile([0.1, 0.7, 0.1, 0.1], (40, 1))
  chance = health.chance_loss(labels, 4, False)
  loss = health.eval_loss(constant, labels, False)
  # During warmup nothing but a non-finite loss counts.
  assert monitor.check(10, loss=loss, chance=chance, scores=constant,
                       labels=labels) == []
  first = monitor.check(20, loss=chance, chance=chance, scores=constant,
                        labels=labels)
  assert [e.kind for e in first] == [health.CONSTANT_PREDICTIONS]
  second = monitor.check(30, loss=chance, chance=chance, scores=constant,
                         labels=labels)
  assert [e.kind for e in second] == [health.LOSS_AT_CHANCE]
  assert monitor.check(40, loss=chance, chance=chance, scores=constant,
                       labels=labels) == []
  assert len(said) == 2 and "likely cause" in said[0] and "--config." in said[0]
  monitor.stop_if_fatal(first + second)  # warnings only by default
  nan = monitor.check(50, loss=float("nan"))
  with pytest.raises(health.TrainingCollapsed, match="non-finite"):
    monitor.stop_if_fatal(nan)
  assert issubclass(health.TrainingCollapsed, UserError)


def test_coupled_decay_is_named_when_it_outweighs_the_gradient():
  said = []
  monitor = health.HealthMonitor("supervised", log=said.append)
  monitor.check(5, pooled=np.zeros((8, 4)), optimiser=dict(
      lr=1e-3, weight_decay=1e-3, decoupled=False, param_norm=50.0,
      grad_norm=1e-3))
  assert "coupled L2" in said[0]
  assert "--config.decoupled_weight_decay=True" in said[0]
  said.clear()
  health.HealthMonitor("supervised", log=said.append).check(
      5, pooled=np.zeros((8, 4)), optimiser=dict(
          lr=1e-3, weight_decay=1e-3, decoupled=True, param_norm=50.0,
          grad_norm=1e-3))
  assert "coupled L2" not in said[0]
  # Weights that shrank by a fifth since the start name it too, even when
  # the global gradient is larger than the decay term.
  said.clear()
  monitor = health.HealthMonitor("supervised", initial_param_norm=100.0,
                                 log=said.append)
  monitor.check(5, pooled=np.zeros((8, 4)), optimiser=dict(
      lr=1e-3, weight_decay=1e-3, decoupled=False, param_norm=80.0,
      grad_norm=1.0))
  assert "fell from 100 to 80" in said[0]


def _supervised(steps=8):
  c = _quiet(load_config("demo_supervised.py", f"steps={steps}"))
  c.batch_size = 8
  c.eval_every_steps = 2
  c.checkpoint_every_steps = 4
  c.log_every_steps = 2
  c.eval_batch_size = 8
  c.warmup_steps = 1
  c.listen_clips = 0  # not what these tests are about
  return c


def _health_records(workdir):
  records = logging_utils.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  return {k.split("/")[1] for r in records for k in r
          if k.startswith("health/")}


@pytest.mark.slow   # ~40 s; test_healthy_run_raises_no_alarm and the alarm unit tests are the fast path
def test_zeroed_encoder_run_collapses_and_stops(tmp_path, monkeypatch):
  """All-zero encoder weights: every block-11 map dead, one prediction,
  the loss at chance."""
  original = trainer.state_lib.create_train_state

  def zeroed(model, optimizer, rng, encoder_params=None):
    state = original(model, optimizer, rng, encoder_params)
    params = dict(state.params)
    params["encoder"] = jax.tree.map(jnp.zeros_like, params["encoder"])
    return trainer.state_lib.TrainState.create(params, optimizer)

  monkeypatch.setattr(trainer.state_lib, "create_train_state", zeroed)
  c = _supervised()
  kwargs = dict(train_source=_clips(24, seed=1),
                eval_source=_clips(12, seed=2), test_source=_clips(6, seed=3))
  final = trainer.train_and_evaluate(c, str(tmp_path / "warn"), **kwargs)
  # Zero weights: dead maps, one class, and the loss of the label prior
  # (ln 3 here) at every evaluation.
  assert _health_records(str(tmp_path / "warn")) == {
      health.CONSTANT_PREDICTIONS, health.COLLAPSED_ENCODER,
      health.LOSS_AT_CHANCE}
  assert "test/accuracy" in final  # warnings only: the run finished
  c.stop_on_collapse = True
  with pytest.raises(health.TrainingCollapsed, match="stop_on_collapse"):
    trainer.train_and_evaluate(c, str(tmp_path / "stop"), **kwargs)
  assert _health_records(str(tmp_path / "stop"))
  assert not os.path.exists(tmp_path / "stop" / trainer.FINAL_METRICS)


def test_exploding_run_stops_on_non_finite_loss(tmp_path):
  c = _supervised(steps=6)
  c.learning_rate = 1e30
  c.clip_norm = 0.0
  with pytest.raises(health.TrainingCollapsed, match="non_finite_loss"
                     ) as stopped:
    trainer.train_and_evaluate(c, str(tmp_path),
                               train_source=_clips(24, seed=1),
                               eval_source=_clips(12, seed=2),
                               test_source=_clips(6, seed=3))
  assert health.NON_FINITE_LOSS in _health_records(str(tmp_path))
  # The entry points' rule (cli.run) makes it one error line, exit 2: the
  # fast form of test_main_exits_non_zero_on_collapse.
  assert cli.expected_message(stopped.value).startswith(
      "training health (non_finite_loss)")


def test_healthy_run_raises_no_alarm(tmp_path):
  c = _supervised(steps=12)
  final = trainer.train_and_evaluate(c, str(tmp_path),
                                     train_source=_clips(24, seed=1),
                                     eval_source=_clips(12, seed=2),
                                     test_source=_clips(6, seed=3))
  assert final["eval/accuracy"] > 0.6  # it learned the pitch classes
  assert not _health_records(str(tmp_path))


@pytest.mark.slow   # ~1.5 min on 2 cores: a python -m sonify_jax.main run
def test_main_exits_non_zero_on_collapse(tmp_path):
  """The entry point turns TrainingCollapsed into an error line, exit 2."""
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep +
             os.environ.get("PYTHONPATH", ""))
  result = subprocess.run(
      [sys.executable, "-m", "sonify_jax.main",
       f"--config={os.path.join(REPO, 'configs', 'demo_supervised.py')}"
       ":steps=4", f"--workdir={tmp_path}", "--config.dataset=embedded_keywords",
       "--config.batch_size=8", "--config.learning_rate=1e30",
       "--config.clip_norm=0.0", "--config.log_every_steps=2",
       "--config.eval_every_steps=4", "--config.progress=False",
       "--config.listen_clips=0"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 2, result.stderr[-2000:]
  assert "error: training health (non_finite_loss)" in result.stderr
