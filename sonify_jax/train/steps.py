"""Data-parallel train and eval steps (``jax.jit`` + ``jax.shard_map``).

Params and optimiser state are replicated over a 1-D device mesh with axis
``'data'``; every batch array has the global batch on axis 0, sharded over
that axis. Inside the shard_map each device runs forward and backward on its
shard; the loss is reduced over the mesh (``psum`` / ``pmean``), and because
the params enter the shard_map replicated (axis-invariant), their gradient
comes out already summed over devices -- the single-device gradient of the
global batch. The optimiser update then runs once, replicated, under jit.

Randomness is split so that results do not depend on the device count where
that is cheap: dropout uses one key per *global example* (the model is vmapped
over examples), so a 1-device and an 8-device mesh give the same step. The
augmentations (``sonify_jax.data.augment``, whose background mixing needs the
local batch) get one independent key per device. The key passed to a step is
folded with ``state.step``, so passing the same key every step is fine.

A step is ``step(state, batch, rng) -> (new_state, metrics)``; metrics are
replicated scalar jax arrays (``loss``, ``learning_rate``, ``grad_norm``).
Shapes, divisibility and label ranges are checked on the host before the
jitted call; audio values are not (that would cost a host pass per step): the
pipeline delivers finite audio, and a non-finite loss shows in the metrics.
"""
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from sonify_jax import distributed
from sonify_jax.models.registry import get_network
from sonify_jax.train import losses, optim
from sonify_jax.train.state import TrainState

AXIS = "data"

Batch = Dict[str, Any]
Step = Callable[[TrainState, Batch, jax.Array], Tuple[TrainState, Dict]]


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh with axis ``'data'`` over ``devices`` (default: all)."""
  devices = list(jax.devices() if devices is None else devices)
  if not devices:
    raise ValueError("make_mesh needs at least one device")
  return Mesh(np.asarray(devices), (AXIS,))


def _replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _check_batch(name: str, x: Any, mesh: Mesh, ndim: int,
                 min_length: int) -> None:
  """Shape checks; ``x`` is a global jax.Array or this process's host rows."""
  shape = np.shape(x)
  if len(shape) != ndim:
    raise ValueError(f"batch['{name}'] must have {ndim} dims, got shape "
                     f"{shape}")
  if isinstance(x, jax.Array):
    rows, devices, what = shape[0], mesh.size, "global batch size"
  else:
    local = [d for d in mesh.devices.flat
             if d.process_index == jax.process_index()]
    rows, devices, what = shape[0], len(local), (
        "batch size" if len(local) == mesh.size else
        "this process's batch size")
  if rows == 0 or rows % devices:
    raise ValueError(
        f"{what} {rows} is not divisible by the {devices} devices it is "
        "sharded over; choose a multiple of the device count")
  if shape[-1] < min_length:
    raise ValueError(
        f"batch['{name}'] clips have {shape[-1]} samples; the encoder needs at"
        f" least {min_length} (its receptive field)")


def _encoder_min_length(model: nn.Module) -> int:
  arch = get_network(model.arch_name)
  return arch.min_input_length(arch.num_blocks)


def _example_keys(key: jax.Array, first: jax.Array, count: int) -> jax.Array:
  """One key per global example index ``first .. first + count - 1``."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(
      first + jnp.arange(count))


def _per_example(apply_fn: Callable, params: Any, x: jax.Array,
                 keys: jax.Array) -> Any:
  """``apply_fn(params, x[i:i+1], keys[i])`` for every row, stacked.

  vmap folds the example axis back into the conv batch, so this costs the
  same as one batched call but gives each example its own dropout key.
  """
  def one(xi, ki):
    out = apply_fn(params, xi[None], ki)
    return jax.tree_util.tree_map(lambda o: o[0], out)

  return jax.vmap(one)(x, keys)


def _finish(optimizer, state: TrainState, grads, loss,
            frozen: Tuple[str, ...] = ()) -> Tuple[TrainState, Dict]:
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  if frozen:
    # Frozen parts keep their exact values: no gradient, no weight decay.
    params = {**params, **{k: state.params[k] for k in frozen}}
  metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
  lr = optim.learning_rate_from_state(opt_state)
  if lr is not None:
    metrics["learning_rate"] = lr
  return TrainState(step=state.step + 1, params=params,
                    opt_state=opt_state), metrics


def _augment_module():
  try:
    from sonify_jax.data import augment  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        "augmentation/mixup requested but sonify_jax.data.augment is not "
        "available") from e
  return augment


def _augment_setup(augment_config: Any, mixup_alpha: float = 0.0):
  """(augment module or None, AugmentConfig or None); dicts are converted."""
  if augment_config is None and mixup_alpha <= 0:
    return None, None
  augment = _augment_module()
  if augment_config is not None and not isinstance(augment_config,
                                                   augment.AugmentConfig):
    augment_config = augment.AugmentConfig.from_dict(augment_config)
  return augment, augment_config


def _wrap(train_step: Callable, mesh: Mesh, prepare: Callable[[Batch], Batch],
          donate: bool) -> Step:
  """Jit ``train_step(state, batch, rng)`` (state and rng replicated, batch
  sharded on axis 0) behind Python-side checks and placement."""
  replicated = _replicated(mesh)
  jitted = jax.jit(train_step,
                   in_shardings=(replicated, distributed.batch_sharding(mesh, AXIS), replicated),
                   out_shardings=(replicated, replicated),
                   donate_argnums=(0,) if donate else ())

  def step(state: TrainState, batch: Batch, rng: jax.Array):
    batch = distributed.global_batch(prepare(batch), mesh, AXIS)
    state = jax.device_put(state, replicated)
    rng = jax.device_put(rng, replicated)
    return jitted(state, batch, rng)

  step.jitted = jitted
  return step


def make_simclr_train_step(model: nn.Module,
                           optimizer: optax.GradientTransformation,
                           mesh: Mesh, augment_config: Any = None,
                           temperature: float = 0.1,
                           donate: bool = False) -> Step:
  """SimCLR step: augment both views, encode + project, global NT-Xent.

  Args:
    model: a ``SimCLRModel`` (``__call__`` returns (embedding, projection)).
    optimizer: the transformation ``state.opt_state`` was built with.
    mesh: from :func:`make_mesh`.
    augment_config: ``augment.AugmentConfig`` (or a dict for its
      ``from_dict``) applied independently to each view, with the device's
      local batch as the background pool; None: no augmentation.
    temperature: NT-Xent tau.
    donate: donate the input state's buffers (do not reuse it afterwards).
  Returns:
    ``step(state, batch, rng) -> (state, metrics)`` with ``batch['audio']``
    float32 ``[B_global, 2, T]`` (two crops per clip); B_global must be a
    multiple of the device count.
  """
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  augment, augment_config = _augment_setup(augment_config)
  min_length = _encoder_min_length(model)

  def apply_fn(params, x, key):
    return model.apply({"params": params}, x, train=True,
                       rngs={"dropout": key})[1]

  def per_device(params, audio, rng):
    b = audio.shape[0]
    index = jax.lax.axis_index(AXIS)
    aug_key, drop_key = jax.random.split(rng)
    views = [audio[:, 0], audio[:, 1]]
    if augment is not None:
      dev_key = jax.random.fold_in(aug_key, index)
      views = [augment.augment_batch(k, v, augment_config)
               for k, v in zip(jax.random.split(dev_key), views)]
    x = jnp.concatenate(views, axis=0)  # [2b, T]
    first = index * b
    keys = jnp.concatenate([
        _example_keys(jax.random.fold_in(drop_key, v), first, b)
        for v in range(2)])

    def loss_fn(p):
      z = _per_example(apply_fn, p, x, keys)  # [2b, proj_out]
      return losses.nt_xent_global(z[:b], z[b:], temperature, AXIS)

    return jax.value_and_grad(loss_fn)(params)

  sharded = jax.shard_map(per_device, mesh=mesh,
                          in_specs=(P(), P(AXIS), P()), out_specs=(P(), P()))

  def train_step(state, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    loss, grads = sharded(state.params, batch["audio"], rng)
    return _finish(optimizer, state, grads, loss)

  def prepare(batch):
    audio = batch["audio"]
    _check_batch("audio", audio, mesh, 3, min_length)
    if np.shape(audio)[1] != 2:
      raise ValueError("SimCLR batch['audio'] must be [B, 2, T] (two views),"
                       f" got shape {np.shape(audio)}")
    return {"audio": audio}

  return _wrap(train_step, mesh, prepare, donate)


def make_supervised_train_step(model: nn.Module,
                               optimizer: optax.GradientTransformation,
                               mesh: Mesh, multilabel: bool,
                               mixup_alpha: float = 0.0,
                               augment_config: Any = None,
                               freeze_encoder: bool = False,
                               donate: bool = False) -> Step:
  """Supervised step: augment, mixup, encoder + linear head, BCE or CE.

  With ``freeze_encoder`` (linear evaluation, the thesis' "fconly") only
  ``params['head']`` is trained: no gradient flows into the encoder and its
  params are returned bit-identical (no weight decay either). The encoder
  still runs in training mode, so its dropout before the embedding layer
  applies, as with PyTorch ``model.train()`` and an optimiser over the fc
  params only. The optimiser state keeps its full-tree structure either way,
  so the same ``TrainState`` layout serves linear eval and fine-tuning.

  Args:
    model: a ``ClassifierModel``.
    optimizer: the transformation ``state.opt_state`` was built with.
    mesh: from :func:`make_mesh`.
    multilabel: sigmoid BCE on multi-hot float labels ``[B, C]``; else
      softmax CE on int labels ``[B]``.
    mixup_alpha: Beta(alpha, alpha) mixup of audio and labels within each
      device's batch (``augment.mixup``); 0 disables.
    augment_config: ``augment.AugmentConfig`` (or a dict) or None (no
      augmentation); applied before mixup.
    freeze_encoder: train the head only.
    donate: donate the input state's buffers.
  Returns:
    ``step(state, batch, rng) -> (state, metrics)`` with ``batch['audio']``
    float32 ``[B_global, T]`` and ``batch['label']``.
  """
  if mixup_alpha < 0:
    raise ValueError(f"mixup_alpha must be >= 0, got {mixup_alpha}")
  augment, augment_config = _augment_setup(augment_config, mixup_alpha)
  min_length = _encoder_min_length(model)
  num_classes = model.num_classes
  loss_of = losses.sigmoid_bce if multilabel else losses.softmax_ce

  def encode_fn(params, x, key):
    return model.apply({"params": params}, x, train=True,
                       rngs={"dropout": key}, method="encode")

  def logits_fn(params, x, key):
    return model.apply({"params": params}, x, train=True,
                       rngs={"dropout": key})

  def per_device(params, audio, labels, rng):
    b = audio.shape[0]
    index = jax.lax.axis_index(AXIS)
    aug_key, mix_key, drop_key = jax.random.split(rng, 3)
    labels = (labels.astype(jnp.float32) if multilabel else
              jax.nn.one_hot(labels, num_classes, dtype=jnp.float32))
    if augment_config is not None:
      audio = augment.augment_batch(jax.random.fold_in(aug_key, index), audio,
                                    augment_config)
    if mixup_alpha > 0:
      audio, labels = augment.mixup(jax.random.fold_in(mix_key, index), audio,
                                    labels, mixup_alpha)
    keys = _example_keys(drop_key, index * b, b)

    if freeze_encoder:
      embedding = jax.lax.stop_gradient(
          _per_example(encode_fn, params, audio, keys))

      def head_loss(head):
        logits = model.apply({"params": {"encoder": params["encoder"],
                                         "head": head}},
                             embedding, method="classify")
        return jax.lax.pmean(loss_of(logits, labels), AXIS)

      loss, head_grads = jax.value_and_grad(head_loss)(params["head"])
      grads = {**jax.tree_util.tree_map(jnp.zeros_like, params),
               "head": head_grads}
      return loss, grads

    def loss_fn(p):
      logits = _per_example(logits_fn, p, audio, keys)
      # Equal shard sizes: the mean of per-device means is the global mean.
      return jax.lax.pmean(loss_of(logits, labels), AXIS)

    return jax.value_and_grad(loss_fn)(params)

  sharded = jax.shard_map(per_device, mesh=mesh,
                          in_specs=(P(), P(AXIS), P(AXIS), P()),
                          out_specs=(P(), P()))
  frozen = ("encoder",) if freeze_encoder else ()

  def train_step(state, batch, rng):
    rng = jax.random.fold_in(rng, state.step)
    loss, grads = sharded(state.params, batch["audio"], batch["label"], rng)
    return _finish(optimizer, state, grads, loss, frozen)

  def prepare(batch):
    audio, label = batch["audio"], batch["label"]
    _check_batch("audio", audio, mesh, 2, min_length)
    expected = (np.shape(audio)[0], num_classes) if multilabel else (
        np.shape(audio)[0],)
    if tuple(np.shape(label)) != expected:
      raise ValueError(f"batch['label'] must have shape {expected} "
                       f"({'multilabel' if multilabel else 'int labels'}), "
                       f"got {np.shape(label)}")
    if not multilabel and not isinstance(label, jax.Array):
      # Host labels are cheap to check; out-of-range ints would otherwise
      # one-hot to all zeros silently inside jit.
      label = np.asarray(label)
      if not np.issubdtype(label.dtype, np.integer):
        raise TypeError(f"int labels expected, got {label.dtype}")
      if label.size and (label.min() < 0 or label.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got "
                         f"{label.min()}..{label.max()}")
    return {"audio": audio, "label": label}

  return _wrap(train_step, mesh, prepare, donate)


def make_eval_step(model: nn.Module, mesh: Mesh,
                   multilabel: Optional[bool] = None
                   ) -> Callable[[Any, Batch], np.ndarray]:
  """Whole-clip scores of a padded batch, gathered to the host.

  Args:
    model: a ``ClassifierModel``.
    mesh: from :func:`make_mesh`.
    multilabel: sigmoid (True) or softmax (False) scores; None: use
      ``model.multilabel``.
  Returns:
    ``eval_step(params_or_state, batch) -> np.ndarray [B, C]`` float32, with
    ``batch['audio']`` ``[B, T]`` zero-padded clips and optional
    ``batch['mask']`` ``[B, T]`` (1 on each clip's valid samples). B need not
    be a multiple of the device count: rows are padded and dropped here.
  """
  if multilabel is None:
    multilabel = bool(getattr(model, "multilabel", False))
  min_length = _encoder_min_length(model)

  def per_device(params, audio, mask):
    logits = model.apply({"params": params}, audio, train=False, mask=mask)
    return (jax.nn.sigmoid(logits) if multilabel
            else jax.nn.softmax(logits, axis=-1))

  sharded = jax.shard_map(per_device, mesh=mesh,
                          in_specs=(P(), P(AXIS), P(AXIS)), out_specs=P(AXIS))
  replicated = _replicated(mesh)
  jitted = jax.jit(sharded,
                   in_shardings=(replicated, distributed.batch_sharding(mesh, AXIS),
                                 distributed.batch_sharding(mesh, AXIS)),
                   out_shardings=distributed.batch_sharding(mesh, AXIS))

  def eval_step(params_or_state, batch: Batch) -> np.ndarray:
    params = (params_or_state.params
              if isinstance(params_or_state, TrainState) else params_or_state)
    audio = np.asarray(batch["audio"], np.float32)
    if audio.ndim != 2:
      raise ValueError(f"batch['audio'] must be [B, T], got {audio.shape}")
    if audio.shape[1] < min_length:
      raise ValueError(
          f"clips have {audio.shape[1]} samples; the encoder needs at least "
          f"{min_length}: zero-pad them and pass a mask")
    if not np.all(np.isfinite(audio)):
      raise ValueError("batch['audio'] contains NaN or inf")
    mask = batch.get("mask")
    mask = (np.ones_like(audio) if mask is None
            else np.asarray(mask, np.float32))
    if mask.shape != audio.shape:
      raise ValueError(f"mask {mask.shape} and audio {audio.shape} differ")
    n = audio.shape[0]
    pad = (-n) % mesh.size
    if pad:
      audio = np.pad(audio, ((0, pad), (0, 0)))
      mask = np.pad(mask, ((0, pad), (0, 0)))
    params = jax.device_put(params, replicated)
    scores = jitted(params, jax.device_put(audio, distributed.batch_sharding(mesh, AXIS)),
                    jax.device_put(mask, distributed.batch_sharding(mesh, AXIS)))
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      scores = multihost_utils.process_allgather(scores, tiled=True)
    return np.asarray(jax.device_get(scores))[:n]

  eval_step.jitted = jitted
  return eval_step
