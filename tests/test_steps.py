"""Data-parallel steps: 8-device results equal the 1-device results on the
same global batch; freeze_encoder; whole-clip eval of padded batches.

Compiles dominate the run time, so params are shared through fixtures and
drawn with numpy on ``jax.eval_shape`` structures where flax's initialisers
are not under test.
"""
import jax
import numpy as np
import pytest

from sonify_jax.data import augment
from sonify_jax.models.composite import (ClassifierModel, SimCLRModel,
                                         init_params, replace_encoder)
from sonify_jax.train import losses, optim, steps
from sonify_jax.train.state import TrainState, create_train_state

ARCH = "cnn12_tiny"
T = 2400  # 0.3 s; the tiny encoder's receptive field is 2370 samples
NUM_CLASSES = 4


def _init_key(seed):
  # The rbg PRNG compiles far faster than threefry on CPU. Step keys stay
  # threefry (the default): rbg bits change under vmap, so only threefry
  # gives per-example dropout masks independent of the device count.
  return jax.random.key(seed, impl="rbg")


def _host(tree):
  return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def _max_diff(a, b):
  return max(jax.tree_util.tree_leaves(jax.tree_util.tree_map(
      lambda x, y: float(np.max(np.abs(x - y))), _host(a), _host(b))))


def _numpy_params(model, seed):
  """Fan-in scaled normal params with the model's structure, no compile."""
  shapes = jax.eval_shape(lambda: init_params(model, _init_key(0)))
  rng = np.random.RandomState(seed)
  return jax.tree_util.tree_map(
      lambda s: (rng.randn(*s.shape) / np.sqrt(np.prod(s.shape[:-1]))
                 if len(s.shape) > 1 else 0.1 * rng.randn(*s.shape)
                 ).astype(np.float32), shapes)


@pytest.fixture(scope="module")
def meshes():
  mesh8 = steps.make_mesh()
  assert mesh8.size == 8 and mesh8.axis_names == ("data",)
  return mesh8, steps.make_mesh(jax.devices()[:1])


@pytest.fixture(scope="module")
def classifier_params():
  return _numpy_params(ClassifierModel(ARCH, NUM_CLASSES), 0)


def test_simclr_step_same_on_8_and_1_devices(meshes):
  model = SimCLRModel(ARCH, dropout_rate=0.4, proj_hidden=32, proj_out=16)
  opt = optim.make_optimizer(1e-2, 1e-3, warmup_steps=0, total_steps=10)
  state = TrainState.create(_numpy_params(model, 0), opt)
  batch = {"audio": np.random.RandomState(0).randn(8, 2, T).astype(
      np.float32)}
  step8, step1 = [steps.make_simclr_train_step(
      model, opt, mesh, augment_config=None, temperature=0.2)
                  for mesh in meshes]
  s8, m8 = step8(state, batch, jax.random.key(1))
  s1, m1 = step1(state, batch, jax.random.key(1))
  np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-5)
  np.testing.assert_allclose(m8["learning_rate"], 1e-2, rtol=1e-6)
  assert int(s8.step) == 1
  # The update is lr-sized (Adam), so a 1e-5 match is a real agreement.
  assert _max_diff(s8.params, state.params) > 1e-3
  assert _max_diff(s8.params, s1.params) < 1e-5
  # Same-seed determinism, and a different key changes the dropout masks.
  assert float(step8(state, batch, jax.random.key(1))[1]["loss"]) == float(
      m8["loss"])
  assert float(step8(state, batch, jax.random.key(2))[1]["loss"]) != float(
      m8["loss"])

  # With the SimCLR augmentations (same key, so same dropout masks): a
  # different, finite loss; a dict config works like the dataclass.
  step_aug = steps.make_simclr_train_step(
      model, opt, meshes[0], augment_config={"mix_p": 1.0}, temperature=0.2)
  s_aug, m_aug = step_aug(state, batch, jax.random.key(1))
  assert np.isfinite(float(m_aug["loss"]))
  assert float(m_aug["loss"]) != float(m8["loss"])
  assert _max_diff(s_aug.params, s8.params) > 0

  with pytest.raises(ValueError, match="divisible"):
    step8(state, {"audio": batch["audio"][:6]}, jax.random.key(1))
  with pytest.raises(ValueError, match="receptive field"):
    step8(state, {"audio": batch["audio"][..., :2000]}, jax.random.key(1))
  with pytest.raises(ValueError, match="two views"):
    step8(state, {"audio": np.zeros((8, 3, T), np.float32)},
          jax.random.key(1))


def test_freeze_encoder_trains_only_the_head(meshes, classifier_params):
  # Dropout off: the key then only drives augmentation and mixup.
  model = ClassifierModel(ARCH, num_classes=NUM_CLASSES, dropout_rate=0.0)
  opt = optim.make_optimizer(1e-2, 1e-3, warmup_steps=0, total_steps=10)
  # Start from another run's encoder, as linear evaluation does.
  donor = jax.tree_util.tree_map(lambda x: 0.5 * x + 0.01,
                                 classifier_params["encoder"])
  params = replace_encoder(classifier_params, donor)
  assert _max_diff(params["encoder"], donor) == 0.0
  assert _max_diff(params["head"], classifier_params["head"]) == 0.0
  state = TrainState.create(params, opt)
  rng = np.random.RandomState(1)
  batch = {"audio": rng.randn(8, T).astype(np.float32),
           "label": rng.randint(0, NUM_CLASSES, 8).astype(np.int32)}
  step = steps.make_supervised_train_step(
      model, opt, meshes[0], multilabel=False, mixup_alpha=0.4,
      augment_config=augment.AugmentConfig(), freeze_encoder=True)
  new, metrics = step(state, batch, jax.random.key(2))
  # Augmentation + mixup are applied: the key changes the loss; and they are
  # deterministic given the key.
  loss_a = float(metrics["loss"])
  assert float(step(state, batch, jax.random.key(2))[1]["loss"]) == loss_a
  assert float(step(state, batch, jax.random.key(5))[1]["loss"]) != loss_a
  new, metrics = step(new, batch, jax.random.key(3))
  assert int(new.step) == 2
  for before, after in zip(jax.tree_util.tree_leaves(_host(state.params[
      "encoder"])), jax.tree_util.tree_leaves(_host(new.params["encoder"]))):
    np.testing.assert_array_equal(before, after)
  assert _max_diff(new.params["head"], state.params["head"]) > 1e-3
  assert np.isfinite(float(metrics["loss"]))

  with pytest.raises(ValueError, match="lie in"):
    step(state, {**batch, "label": np.full(8, NUM_CLASSES, np.int32)},
         jax.random.key(0))
  with pytest.raises(ValueError, match="label"):
    step(state, {**batch, "label": batch["label"][:4]}, jax.random.key(0))


def test_supervised_multilabel_step_matches_plain_gradient(
    meshes, classifier_params):
  # Dropout off, so the 8-device step must equal one optimiser update with
  # the plain single-device gradient of the global-batch mean BCE.
  model = ClassifierModel(ARCH, NUM_CLASSES, dropout_rate=0.0,
                          multilabel=True)
  opt = optim.make_optimizer(1e-2, 1e-3, warmup_steps=0, total_steps=10)
  state = TrainState.create(classifier_params, opt)
  rng = np.random.RandomState(2)
  batch = {"audio": rng.randn(8, T).astype(np.float32),
           "label": (rng.uniform(size=(8, NUM_CLASSES)) < 0.4).astype(
               np.float32)}
  step = steps.make_supervised_train_step(model, opt, meshes[0],
                                          multilabel=True)
  new, metrics = step(state, batch, jax.random.key(1))

  def loss_fn(p):
    return losses.sigmoid_bce(model.apply({"params": p}, batch["audio"]),
                              batch["label"])

  loss, grads = jax.jit(jax.value_and_grad(loss_fn))(classifier_params)
  updates, _ = opt.update(grads, opt.init(classifier_params),
                          classifier_params)
  expected = jax.tree_util.tree_map(lambda p, u: p + u, classifier_params,
                                    updates)
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)
  np.testing.assert_allclose(
      metrics["grad_norm"],
      np.sqrt(sum(np.sum(np.square(g)) for g in
                  jax.tree_util.tree_leaves(_host(grads)))), rtol=1e-4)
  assert _max_diff(new.params["encoder"], state.params["encoder"]) > 1e-3
  assert _max_diff(new.params, expected) < 1e-5


def test_eval_step_scores_padded_clips_like_unpadded(meshes,
                                                     classifier_params):
  model = ClassifierModel(ARCH, NUM_CLASSES, dropout_rate=0.4)
  params = classifier_params
  rng = np.random.RandomState(4)
  lengths = [2400, 4000, 2400]
  clips = [rng.randn(n).astype(np.float32) for n in lengths]
  audio = np.zeros((3, max(lengths)), np.float32)
  mask = np.zeros_like(audio)
  for i, c in enumerate(clips):
    audio[i, :len(c)] = c
    mask[i, :len(c)] = 1
  batch = {"audio": audio, "mask": mask}
  eval_step = steps.make_eval_step(model, meshes[0])
  # 3 rows on 8 devices: padded inside, 3 rows back.
  scores = eval_step(params, batch)
  assert scores.shape == (3, NUM_CLASSES)
  logits_alone = jax.jit(lambda x: model.apply({"params": params}, x))
  for i, c in enumerate(clips):
    alone = jax.nn.softmax(logits_alone(c[None]))[0]
    np.testing.assert_allclose(scores[i], alone, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(scores.sum(1), 1.0, rtol=1e-5)
  state = TrainState.create(params, optim.make_optimizer(1e-3, 0, 0, 2))
  np.testing.assert_array_equal(eval_step(state, batch), scores)
  # Multilabel: sigmoid of the same logits; their softmax is the above.
  sig = steps.make_eval_step(model, meshes[0], multilabel=True)(params,
                                                                batch)
  assert np.all((sig > 0) & (sig < 1))
  np.testing.assert_allclose(jax.nn.softmax(np.log(sig / (1 - sig))), scores,
                             rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="NaN"):
    eval_step(params, {"audio": np.full((2, T), np.nan, np.float32)})
  with pytest.raises(ValueError, match="receptive field|at least"):
    eval_step(params, {"audio": np.zeros((2, 1000), np.float32)})


def test_replace_encoder_checks_shapes():
  tiny = _numpy_params(ClassifierModel("cnn12_tiny", 3), 0)
  small = _numpy_params(ClassifierModel("cnn12_small", 3), 0)
  with pytest.raises(ValueError, match="shape"):
    replace_encoder(tiny, small["encoder"])
  with pytest.raises(ValueError, match="tree"):
    replace_encoder(tiny, {"block1": tiny["encoder"]["block1"]})
  zeros = jax.tree_util.tree_map(np.zeros_like, tiny["encoder"])
  swapped = replace_encoder(tiny, zeros)
  assert _max_diff(swapped["head"], tiny["head"]) == 0.0
  assert _max_diff(swapped["encoder"], zeros) == 0.0
  assert np.abs(tiny["encoder"]["block1"]["kernel"]).max() > 0  # untouched


def test_composite_params_layout():
  # Traced only (eval_shape): the layout, not flax's initialisers, is tested.
  from sonify_jax.models import build_encoder  # pylint: disable=g-import-not-at-top
  model = SimCLRModel(ARCH, 0.4, proj_hidden=24, proj_out=16)
  opt = optim.make_optimizer(1e-3, 1e-3, 0, 10)
  cnn12 = jax.eval_shape(lambda: build_encoder(ARCH).init(
      _init_key(0), np.zeros((1, T), np.float32))["params"])
  donor = jax.tree_util.tree_map(lambda s: np.ones(s.shape, s.dtype), cnn12)
  state = jax.eval_shape(lambda: create_train_state(
      model, opt, _init_key(0), encoder_params=donor))
  assert set(state.params) == {"encoder", "projection"}
  # params['encoder'] is exactly a CNN12 tree (what deconvnet.sonify takes).
  assert (jax.tree_util.tree_structure(state.params["encoder"]) ==
          jax.tree_util.tree_structure(cnn12))
  assert jax.tree_util.tree_map(lambda a, b: a.shape == b.shape,
                                state.params["encoder"], cnn12)
  assert state.params["projection"]["out"]["kernel"].shape == (24, 16)
  head = jax.eval_shape(lambda: init_params(
      ClassifierModel(ARCH, 7), _init_key(0)))["head"]
  assert head["logits"]["kernel"].shape == (64, 7)  # tiny embed_dim 64
