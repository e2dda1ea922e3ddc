"""The training loop: SimCLR pre-training and supervised training/linear eval.

``train_and_evaluate(config, workdir)`` runs a whole experiment from a config
(``configs/*.py``): data from ``catalog.get_source`` + ``pipeline``, the
data-parallel steps of ``steps.py`` over every device, whole-clip evaluation,
metrics to TensorBoard + metrics.jsonl, orbax checkpoints. A preempted run
restarted with the same command resumes from its latest checkpoint and ends
with the same params as an uninterrupted run: the pipeline is a function of
(seed, step) (restarted at ``start_step``) and the steps fold the step number
into the one run key, so nothing but the TrainState needs saving.
"""
import dataclasses
import time
from typing import Any, Dict, Optional

from absl import logging
import jax
import ml_collections
import numpy as np

from sonify_jax import atomic_io
from sonify_jax import config_check
from sonify_jax import paths
from sonify_jax.errors import UserError
from sonify_jax.models.registry import get_network
from sonify_jax.train import checkpoints
from sonify_jax.train import evaluate as evaluate_lib
from sonify_jax.train import health
from sonify_jax.train import listen
from sonify_jax.train import logging_utils
from sonify_jax.train import optim
from sonify_jax.train import preemption
from sonify_jax.train import state as state_lib
from sonify_jax.train import steps as steps_lib

# The test split's metrics of the selected checkpoint, written once at the end.
FINAL_METRICS = checkpoints.FINAL_METRICS


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Step counts derived from the config and the dataset size."""
  steps_per_epoch: int
  total_steps: int
  warmup_steps: int


def make_schedule(config: ml_collections.ConfigDict,
                  num_train_clips: int) -> Schedule:
  """Total and warmup steps from epochs (or explicit step counts)."""
  steps_per_epoch = max(1, num_train_clips // config.batch_size)
  total = (int(config.total_steps) if config.total_steps > 0
           else int(round(config.num_epochs * steps_per_epoch)))
  if total < 1:
    raise UserError(f"the run would have {total} steps: set "
                     "config.total_steps or config.num_epochs > 0")
  warmup = (int(config.warmup_steps) if config.warmup_steps >= 0
            else int(round(config.warmup_epochs * steps_per_epoch)))
  # The cosine needs at least one step after the warmup.
  warmup = max(0, min(warmup, total - 1))
  return Schedule(steps_per_epoch, total, warmup)


def validate_config(config: ml_collections.ConfigDict,
                    num_devices: Optional[int] = None) -> None:
  """Raises UserError for an unusable config (before any data is read):
  every field and rule of ``config_check`` (the one place they live), and
  the rule only the trainer can check, that the batch splits over the
  devices."""
  config_check.validate(config, check_paths=False)
  num_devices = jax.device_count() if num_devices is None else num_devices
  if config.batch_size % num_devices:
    raise UserError(
        f"config.batch_size={config.batch_size} is not a multiple of the "
        f"{num_devices} devices")


def _get_source(config, split: str):
  # Imported here: the catalog pulls in dataset builders (tfds) that
  # config-only users (tests of configs, launchers) need not load.
  from sonify_jax.data import catalog  # pylint: disable=g-import-not-at-top
  if config.get("build_from"):
    # configs/folder.py: build the user's folder on first use (a no-op when
    # built from the same folder; refused when built from another).
    from sonify_jax.data import builders  # pylint: disable=g-import-not-at-top
    builders.build(config.dataset, config.build_from, config.data_dir,
                   **dict(config.get("build_options") or {}))
  return catalog.get_source(config.dataset, split, config.data_dir or None)


def _augment_config(config):
  from sonify_jax.data import augment  # pylint: disable=g-import-not-at-top
  aug = augment.AugmentConfig.from_dict(config.augment)
  if not (aug.use_gain or aug.use_noise or aug.use_masks or aug.use_mix):
    return None
  return aug


def build_model(config, num_classes: int = 0, multilabel: bool = False):
  """The composite model the config trains."""
  if config.task == "simclr":
    return state_lib.SimCLRModel(arch_name=config.model,
                                 dropout_rate=config.dropout,
                                 proj_hidden=config.proj_hidden,
                                 proj_out=config.proj_out,
                                 compute_dtype=config.compute_dtype)
  return state_lib.ClassifierModel(arch_name=config.model,
                                   num_classes=num_classes,
                                   dropout_rate=config.dropout,
                                   multilabel=multilabel,
                                   compute_dtype=config.compute_dtype)


def _load_init_encoder(config):
  if not config.init_from:
    return None
  step = (checkpoints.LATEST if config.init_step < 0
          else int(config.init_step))
  encoder, arch_name = checkpoints.load_encoder(config.init_from, step)
  if arch_name != config.model:
    raise UserError(
        f"config.init_from={config.init_from!r} holds a {arch_name} encoder "
        f"but config.model={config.model!r}")
  logging.info("encoder initialised from %s (step %s)", config.init_from,
               step)
  return encoder


def _check_same_run(workdir: str, config, num_classes: int) -> None:
  """Refuses to resume a workdir that holds a different kind of run."""
  try:
    info = checkpoints.load_run_info(workdir)
  except FileNotFoundError:
    return
  previous = (info.get("task"), info.get("arch"), info.get("num_classes"))
  current = (config.task, config.model, num_classes)
  if previous != current:
    raise UserError(
        f"{workdir} holds a (task, model, num_classes)={previous} run; this "
        f"config is {current}. Use a fresh --workdir.")


def _host_scalars(metrics: Dict[str, Any]) -> Dict[str, float]:
  return {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       train_source=None, eval_source=None, test_source=None
                       ) -> Dict[str, float]:
  """Trains per ``config`` in ``workdir`` (resuming if it has checkpoints).

  Args:
    config: an experiment config (see configs/common.py for the fields).
    workdir: where checkpoints, run.json, TensorBoard events and
      metrics.jsonl go.
    train_source, eval_source, test_source: ClipSources to use instead of
      ``catalog.get_source(config.dataset, config.train_split / eval_split /
      test_split)`` (in-memory data, tests).

  Returns:
    The final metrics: ``train/loss`` (mean of the last logging window) and,
    for supervised runs, the final whole-clip ``eval/*`` metrics (the
    validation split, ``config.eval_split``) and ``test/*`` metrics of the
    best checkpoint on ``config.test_split`` (also in
    ``WORKDIR/final_metrics.json``; the test split is read only then).
  """
  workdir = paths.resolve(workdir)
  mesh = steps_lib.make_mesh()
  validate_config(config, mesh.size)
  is_main = jax.process_index() == 0

  if train_source is None:
    train_source = _get_source(config, config.train_split)
  if len(train_source) == 0:
    raise ValueError(f"{config.dataset}/{config.train_split} has no clips")
  multilabel = bool(train_source.multilabel)
  num_classes = int(train_source.num_classes)
  schedule = make_schedule(config, len(train_source))
  total_steps = schedule.total_steps
  logging.info("%s on %s/%s: %d clips, %d steps (%d per epoch, %d warmup), "
               "global batch %d over %d devices", config.task, config.dataset,
               config.train_split, len(train_source), total_steps,
               schedule.steps_per_epoch, schedule.warmup_steps,
               config.batch_size, mesh.size)

  model = build_model(config, num_classes, multilabel)
  optimizer = optim.make_optimizer(
      config.learning_rate, config.weight_decay, schedule.warmup_steps,
      total_steps, decoupled_weight_decay=config.decoupled_weight_decay,
      clip_norm=config.get("clip_norm") or None)
  augment_config = _augment_config(config)

  # Step 0 (the untrained init) is always kept: it is the analyses' control.
  keep_steps = {0} | {int(s) for s in config.keep_steps}
  ckpt = checkpoints.Checkpointer(
      workdir, keep_last=config.keep_last, keep_steps=keep_steps,
      best_metric=config.best_metric, best_mode=config.best_mode)
  latest = ckpt.latest_step()
  if latest is not None:
    _check_same_run(workdir, config, num_classes)
  run_key = jax.random.PRNGKey(config.seed)
  init_key, step_key = jax.random.split(run_key)
  # A resumed run overwrites the init with its checkpoint, so the source
  # encoder is loaded only when starting fresh.
  init_encoder = _load_init_encoder(config) if latest is None else None
  state = state_lib.create_train_state(model, optimizer, init_key,
                                       init_encoder)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state = jax.device_put(state, replicated)
  checkpoints.save_run_info(
      workdir, config, arch=config.model, task=config.task,
      num_classes=num_classes, multilabel=multilabel,
      class_names=list(getattr(train_source, "class_names", [])),
      total_steps=total_steps, warmup_steps=schedule.warmup_steps)

  if latest is not None:
    state = ckpt.restore(state, latest)
    logging.info("resumed from checkpoint step %d", latest)
  start_step = int(jax.device_get(state.step))
  if start_step == 0 and latest is None:
    ckpt.save(0, state)

  if config.task == "simclr":
    train_step = steps_lib.make_simclr_train_step(
        model, optimizer, mesh, augment_config, config.temperature)
    eval_step = None
    eval_source = None  # no labels: nothing to score or select on
  else:
    train_step = steps_lib.make_supervised_train_step(
        model, optimizer, mesh, multilabel, config.mixup_alpha,
        augment_config, config.freeze_encoder)
    eval_step = steps_lib.make_eval_step(model, mesh, multilabel)
    if eval_source is None and config.eval_split:
      eval_source = _get_source(config, config.eval_split)

  sample_rate = get_network(config.model).sample_rate

  def run_eval(params, source, prefix="eval/", with_scores=False):
    max_samples = (int(round(config.eval_max_seconds * sample_rate))
                   if config.eval_max_seconds > 0 else None)
    start = time.time()
    scores, labels = evaluate_lib.predict(
        eval_step, params, source, arch_name=config.model,
        batch_size=config.eval_batch_size, max_samples=max_samples)
    if not np.all(np.isfinite(scores)):
      # Non-finite params: only the loss says so; the health check stops.
      out = {prefix + "loss": float("nan")}
      return (out, scores, labels) if with_scores else out
    out = evaluate_lib.score_metrics(scores, labels, multilabel, prefix)
    out[prefix + "loss"] = health.eval_loss(scores, labels, multilabel)
    out[prefix + "seconds"] = time.time() - start
    return (out, scores, labels) if with_scores else out

  crop_samples = int(round(config.crop_seconds * sample_rate))
  monitor = health.HealthMonitor(
      config.task, warmup_steps=schedule.warmup_steps,
      patience=config.get("health_patience", health.PATIENCE),
      stop_on_collapse=config.get("stop_on_collapse", False),
      initial_param_norm=health.tree_norm(state.params)
      if start_step == 0 else None)
  probe = health.probe_clips(
      eval_source if eval_source is not None else train_source,
      num_clips=min(32, config.eval_batch_size), crop_samples=crop_samples)
  pooled_fn = health.make_pooled_features_fn(config.model)
  last_scalars: Dict[str, float] = {}

  def check_health(done, loss, chance, scores=None, labels=None):
    optimiser = {
        "lr": config.learning_rate, "weight_decay": config.weight_decay,
        "decoupled": bool(config.decoupled_weight_decay),
        "param_norm": health.tree_norm(state.params),
        "grad_norm": last_scalars.get("train/grad_norm", float("nan"))}
    pooled = (None if probe is None or (loss is not None and
                                        not np.isfinite(loss)) else
              pooled_fn(state.params["encoder"], *probe))
    events = monitor.check(done, loss=loss, chance=chance, scores=scores,
                           labels=labels, pooled=pooled, optimiser=optimiser)
    for event in events:
      writer.write_scalars(done, health.event_scalars(event))
    monitor.stop_if_fatal(events)

  writer = logging_utils.MetricWriter(workdir, enabled=is_main)
  listen_set = None
  if is_main and config.listen_clips > 0:
    listen_source = eval_source if eval_source is not None else train_source
    # A fresh run chooses from its starting encoder; a resumed run reloads
    # the choice it saved then.
    listen_set = listen.choose_or_load(
        workdir, jax.device_get(state.params["encoder"]), config.model,
        listen_source, config)

  def write_listening(done: int) -> None:
    if listen_set is not None:
      listen.write_summaries(writer, done,
                             jax.device_get(state.params["encoder"]),
                             config.model, listen_set)

  def listen_due(done: int) -> bool:
    every = config.listen_every_steps or (
        config.eval_every_steps if eval_step is not None else 0)
    return done == total_steps or (every > 0 and done % every == 0)

  progress = logging_utils.Progress(
      total_steps, start_step, enabled=is_main and config.progress,
      desc=f"{config.task} {config.model}")
  batches = None
  final: Dict[str, float] = {}
  window_metrics, window_start, window_steps = [], time.time(), 0
  eval_metrics: Dict[str, float] = {}
  watch = preemption.Watch().start()
  try:
    if start_step == 0 and start_step < total_steps:
      write_listening(0)   # the starting encoder, to compare against
    if start_step < total_steps:
      batches = pipeline_train_batches(
          train_source, config, crop_samples, start_step)
      if latest is not None:
        _restore_input_state(ckpt, batches, latest, start_step)
    for step in range(start_step, total_steps):
      batch = next(batches)
      if config.task == "supervised":
        # One crop per clip: [B, 1, T] -> [B, T].
        batch = {"audio": batch["audio"][:, 0], "label": batch["label"]}
      else:
        batch = {"audio": batch["audio"]}
      state, metrics = train_step(state, batch, step_key)
      done = step + 1
      window_metrics.append(metrics)
      window_steps += 1
      if done % config.log_every_steps == 0 or done == total_steps:
        host = [_host_scalars(m) for m in window_metrics]
        elapsed = max(time.time() - window_start, 1e-9)
        scalars = {f"train/{k}": float(np.mean([h[k] for h in host]))
                   for k in host[-1]}
        scalars["train/clips_per_sec"] = (
            window_steps * config.batch_size / elapsed)
        scalars["train/epoch"] = done / schedule.steps_per_epoch
        # With coupled L2, weight_decay * param_norm vs grad_norm tells
        # whether the decay or the loss drives Adam (see health.py).
        scalars["train/param_norm"] = health.tree_norm(state.params)
        writer.write_scalars(done, scalars)
        last_scalars = scalars
        if not np.isfinite(scalars["train/loss"]):
          check_health(done, scalars["train/loss"], None)  # raises
        final.update(scalars)
        progress.update(done, window_steps,
                        loss=scalars["train/loss"],
                        clips_s=scalars["train/clips_per_sec"])
        window_metrics, window_start, window_steps = [], time.time(), 0
      eval_metrics = {}
      if eval_source is not None and (
          done == total_steps or
          (config.eval_every_steps > 0 and
           done % config.eval_every_steps == 0)):
        eval_metrics, scores, labels = run_eval(state.params, eval_source,
                                                with_scores=True)
        writer.write_scalars(done, eval_metrics)
        if not np.isfinite(eval_metrics["eval/loss"]):
          check_health(done, eval_metrics["eval/loss"], None)  # raises
        final.update(eval_metrics)
        progress.write(f"step {done}: " + ", ".join(
            f"{k}={v:.4f}" for k, v in sorted(eval_metrics.items())))
        check_health(done, eval_metrics["eval/loss"],
                     health.chance_loss(labels, num_classes, multilabel),
                     scores, labels)
      if listen_due(done):
        write_listening(done)
      saved = (done % config.checkpoint_every_steps == 0 or
               done in keep_steps or done == total_steps)
      if saved and eval_source is None and last_scalars:
        # No validation: check the encoder and the train loss here.
        check_health(done, last_scalars["train/loss"],
                     health.chance_nt_xent(config.batch_size)
                     if config.task == "simclr" else None)
      if saved:
        ckpt.save(done, state, metrics=eval_metrics or None,
                  data_iter=batches)
      if watch.reached(done, ckpt.manager) and done < total_steps:
        if not saved:
          ckpt.save(done, state, data_iter=batches)
        logging.warning("preempted: saved step %d; rerun the same command to "
                        "resume", done)
        raise preemption.Preempted(done)
      if config.step_delay_s > 0:
        time.sleep(config.step_delay_s)
    if eval_source is not None and not any(k.startswith("eval/")
                                           for k in final):
      # Resumed after the last step: report the final checkpoint's metrics.
      final.update(run_eval(state.params, eval_source))
    if batches is not None:
      batches.close()  # no training read may follow the test split's
      batches = None
    test_split = config.get("test_split", "")
    if config.task == "supervised" and (test_source is not None or
                                        test_split):
      final.update(_test_best_checkpoint(config, workdir, ckpt, state,
                                         run_eval, test_source, is_main))
  finally:
    watch.stop()
    progress.close()
    if batches is not None:
      batches.close()
    writer.close()
    ckpt.close()
  return final


def _test_best_checkpoint(config, workdir: str, ckpt, state, run_eval,
                          test_source, is_main: bool) -> Dict[str, float]:
  """Scores the best checkpoint once on the test split; final_metrics.json.

  The best checkpoint is the one with the best ``config.best_metric`` on the
  validation split (the last one when nothing ranks checkpoints).
  """
  best = ckpt.best_step()
  last = int(jax.device_get(state.step))
  step = last if best is None else int(best)
  params = state.params if step == last else ckpt.restore(state,
                                                          step).params
  name = config.get("test_split", "") or getattr(test_source, "split", "test")
  if test_source is None:
    test_source = _get_source(config, name)
  metrics = run_eval(params, test_source, prefix="test/")
  if is_main:
    atomic_io.write_json(paths.join(workdir, FINAL_METRICS), {
        "dataset": config.dataset, "split": name, "step": step,
        "selected_on": config.eval_split if best is not None else "",
        "selected_by": config.best_metric if best is not None else "last",
        "metrics": metrics})
  logging.info("test split %r, checkpoint step %d: %s", name, step,
               ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
  return metrics


def _restore_input_state(ckpt, batches, step: int, start_step: int) -> None:
  """Gives the training iterator the grain state saved with ``step``, and
  checks it goes on at the train state's step."""
  if not ckpt.restore_data_iter(batches, step):
    return  # saved without one (step 0, older runs): start_step decides
  if batches.next_step != start_step:
    raise UserError(
        f"checkpoint step {step} of {ckpt.directory}: its input iterator "
        f"state is at step {batches.next_step} but its train state at step "
        f"{start_step}")
  logging.info("input iterator resumed at step %d from its saved state",
               start_step)


def pipeline_train_batches(source, config, crop_samples: int,
                           start_step: int):
  """This process's share of the training batches from ``start_step``."""
  from sonify_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  return pipeline.train_batches(
      source, global_batch_size=config.batch_size, crop_samples=crop_samples,
      num_crops=config.num_crops, seed=config.seed, start_step=start_step,
      process_index=jax.process_index(), process_count=jax.process_count(),
      disjoint_crops=config.get("disjoint_crops", True))
