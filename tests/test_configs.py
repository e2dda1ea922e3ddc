"""Every experiment config loads with every documented arg and is sane."""
import copy
import os

from absl import flags
import ml_collections
from ml_collections import config_flags
import pytest

from sonify_jax import config_check
from sonify_jax import config_files
from sonify_jax.data import augment
from sonify_jax.data import catalog
from sonify_jax.data.sources import SAMPLE_RATE
from sonify_jax.models.registry import get_network
from sonify_jax.train import trainer

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs")

TAUS = ("0.1", "0.2", "0.3")
AUGS = ("all", "no_gain", "no_noise", "no_mask", "no_mix", "only_gain",
        "only_noise", "only_mask", "only_mix", "none")
FINETUNE_ARGS = ([None, "init=scratch", "model=cnn12_x2",
                  "init=scratch,model=cnn12_x2"] +
                 [f"init={i},mode={m}" + x
                  for i in ("contrastive", "supervised")
                  for m in ("fconly", "full")
                  for x in ("", ",model=cnn12_x2")])

# (file, arg) for every experiment of the thesis and the demos.
CASES = (
    [("simclr_audioset.py", None)] +
    [("simclr_audioset.py", f"tau={t}") for t in TAUS] +
    [("simclr_audioset.py", f"aug={a}") for a in AUGS] +
    [("simclr_audioset.py", "tau=0.1,aug=no_mix,model=cnn12_x2")] +
    [(f, a) for f in ("supervised_audioset.py", "fsd50k.py",
                      "speech_commands.py", "voxceleb1.py")
     for a in FINETUNE_ARGS] +
    [("speech_commands.py", "task=12"),
     ("speech_commands.py", "task=12,init=contrastive,mode=fconly"),
     ("folder.py", "path=/data/my_sounds"),
     ("folder.py", "path=/data/x,model=cnn12_tiny,group_regex=^([^_]+)_,"
      "split_percent=70/15/15,init=contrastive,mode=fconly")] +
    [("demo_simclr.py", None), ("demo_simclr.py", "model=cnn12_small"),
     ("demo_supervised.py", None), ("demo_supervised.py", "init=contrastive"),
     ("demo_supervised.py", "init=contrastive,mode=full")])

REQUIRED = ("task", "seed", "model", "dropout", "dataset", "data_dir",
            "train_split", "eval_split", "crop_seconds", "num_crops",
            "batch_size", "num_epochs", "total_steps", "warmup_epochs",
            "warmup_steps", "learning_rate", "weight_decay", "temperature",
            "proj_hidden", "proj_out", "mixup_alpha", "init", "init_from",
            "init_step", "freeze_encoder", "augment", "eval_every_steps",
            "eval_batch_size", "eval_max_seconds", "checkpoint_every_steps",
            "keep_last", "keep_steps", "best_metric", "best_mode",
            "log_every_steps")


def load(name, arg=None):
  path = os.path.join(CONFIG_DIR, name)
  return config_files.load_config(path if arg is None else f"{path}:{arg}")


def test_every_config_file_is_covered():
  files = {f for f in os.listdir(CONFIG_DIR)
           if f.endswith(".py") and f not in ("common.py", "__init__.py")}
  assert files == {f for f, _ in CASES}


def test_configs_is_a_package_and_its_files_share_one_import():
  """configs/ is a package; every config file reaches common.py by one
  import line, the same in each (no per-file loader code)."""
  assert os.path.isfile(os.path.join(CONFIG_DIR, "__init__.py"))
  from sonify_jax.models.registry import TRAINABLE  # pylint: disable=g-import-not-at-top
  assert config_files.common.TRAINABLE is TRAINABLE
  assert not hasattr(config_files.common, "MODELS")
  for name in {f for f, _ in CASES}:
    with open(os.path.join(CONFIG_DIR, name)) as f:
      text = f.read()
    assert "from sonify_jax.config_files import common\n" in text, name
    assert "__file__" not in text and "importlib" not in text, name


@pytest.mark.parametrize("name,arg", CASES)
def test_config_is_sane(name, arg):
  c = load(name, arg)
  for field in REQUIRED:
    assert field in c, f"{name}:{arg} lacks {field}"
  arch = get_network(c.model)
  assert catalog.is_known(c.dataset)
  crop = int(round(c.crop_seconds * SAMPLE_RATE))
  assert crop >= arch.min_input_length(arch.num_blocks)
  # The global batch splits over a TPU v3-8 and the tests' 8 CPU devices.
  assert c.batch_size % 8 == 0
  assert c.learning_rate > 0 and c.weight_decay == pytest.approx(1e-3)
  assert c.total_steps > 0 or c.num_epochs > 0
  assert c.warmup_steps >= 0 or c.warmup_epochs >= 0
  # Thesis: 10 warmup epochs for training from scratch.
  if c.init == "scratch" and c.total_steps < 0:
    assert c.warmup_epochs == 10
  assert c.checkpoint_every_steps >= 1 and c.keep_last >= 1
  assert all(isinstance(s, int) and s >= 0 for s in c.keep_steps)
  assert c.best_mode in ("max", "min")
  aug = augment.AugmentConfig.from_dict(c.augment)
  if c.task == "simclr":
    assert c.num_crops == 2 and c.temperature > 0
    assert not c.freeze_encoder and not c.init_from
  else:
    assert c.task == "supervised" and c.num_crops == 1
    assert c.best_metric in ("", "eval/mAP", "eval/accuracy")
  if arg and "model=" in arg:
    assert c.model == arg.split("model=")[1].split(",")[0]
  if c.init != "scratch":
    c.init_from = "/some/run"  # what the user passes on the command line
  trainer.validate_config(c, num_devices=8)
  assert isinstance(aug, augment.AugmentConfig)


@pytest.mark.parametrize("tau", TAUS)
def test_simclr_temperature_arg(tau):
  assert load("simclr_audioset.py", f"tau={tau}").temperature == float(tau)


@pytest.mark.parametrize("aug", AUGS)
def test_augmentation_ablations(aug):
  """Table 4.1: 'no_X' drops exactly X, 'only_X' keeps exactly X."""
  c = load("simclr_audioset.py", f"aug={aug}").augment
  on = {name for name in ("gain", "noise", "masks", "mix")
        if c[f"use_{name}"]}
  everything = {"gain", "noise", "masks", "mix"}
  expected = {"all": everything, "none": set()}.get(aug)
  if aug.startswith("no_"):
    dropped = aug[3:].replace("mask", "masks")
    expected = everything - {dropped}
  elif aug.startswith("only_"):
    expected = {aug[5:].replace("mask", "masks")}
  assert on == expected


@pytest.mark.parametrize("name", ["supervised_audioset.py", "fsd50k.py",
                                  "speech_commands.py", "voxceleb1.py"])
def test_finetune_modes(name):
  scratch = load(name, "init=scratch")
  fconly = load(name, "init=contrastive,mode=fconly")
  full = load(name, "init=supervised,mode=full")
  assert not scratch.freeze_encoder and scratch.init == "scratch"
  assert fconly.freeze_encoder and fconly.init == "contrastive"
  assert not full.freeze_encoder and full.init == "supervised"
  # A transferred encoder needs the run to take it from.
  with pytest.raises(ValueError, match="init_from"):
    trainer.validate_config(fconly, num_devices=8)


def test_task_and_folder_args_pick_the_dataset():
  assert load("speech_commands.py").dataset == "speech_commands"
  c = load("speech_commands.py", "task=12,model=cnn12_x2")
  assert c.dataset == "speech_commands12" and c.model == "cnn12_x2"
  c = load("folder.py", "path=/data/My Sounds/,data_dir=/tmp/t,"
           "group_regex=^(.+)_,split_seed=3")
  assert c.dataset == "folder:My Sounds" and c.build_from == "/data/My Sounds"
  assert c.data_dir == "/tmp/t" and c.eval_split == "validation"
  assert dict(c.build_options) == {"group_regex": "^(.+)_",
                                   "split_percent": "80/10/10",
                                   "split_seed": 3}


@pytest.mark.parametrize("name,arg", [
    ("simclr_audioset.py", "tau"), ("simclr_audioset.py", "aug=no_reverb"),
    ("simclr_audioset.py", "tau=hot"), ("simclr_audioset.py", "epochs=3"),
    ("simclr_audioset.py", "model=resnet"), ("fsd50k.py", "init=imagenet"),
    ("fsd50k.py", "mode=half"), ("demo_supervised.py", "init=supervised"),
    ("speech_commands.py", "task=20"), ("folder.py", None),
    ("folder.py", "path=/x,model=resnet")])
def test_bad_args_are_rejected(name, arg):
  with pytest.raises(ValueError):
    load(name, arg)


def test_validate_config_rejects_bad_settings():
  c = load("demo_simclr.py")
  trainer.validate_config(c, num_devices=8)
  for field, value in [("batch_size", 12), ("crop_seconds", 0.2),
                       ("num_crops", 1), ("temperature", 0.0),
                       ("task", "byol"), ("keep_last", 0)]:
    bad = load("demo_simclr.py")
    bad[field] = value
    with pytest.raises(ValueError):
      trainer.validate_config(bad, num_devices=8)


def test_schedule_from_epochs():
  c = load("fsd50k.py")
  s = trainer.make_schedule(c, num_train_clips=c.batch_size * 300 + 5)
  assert s.steps_per_epoch == 300
  assert s.total_steps == 100 * 300 and s.warmup_steps == 10 * 300


def test_command_line_overrides():
  """--config=FILE:ARG and --config.FIELD=VALUE, as sonify_jax.main parses."""
  path = os.path.join(CONFIG_DIR, "simclr_audioset.py")
  argv = ["prog", f"--config={path}:tau=0.3,aug=no_mix",
          "--config.batch_size=64", "--config.keep_steps=(10,20)",
          "--config.augment.noise_p=0.25"]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv,
                                  sys_argv=argv)
  fv(argv)
  c = fv.config
  assert c.temperature == 0.3 and not c.augment.use_mix
  assert c.batch_size == 64 and tuple(c.keep_steps) == (10, 20)
  assert c.augment.noise_p == 0.25


# The thesis protocol (../shared/thesis-notes.md, ch. 4.3-4.4), restated
# here as the independent fact the configs must match:
# file -> (global batch, crop seconds, eval (selection) split, test split).
THESIS = {
    "simclr_audioset.py": (2048, 2.5, "", ""),
    "supervised_audioset.py": (1024, 5.0, "validation", "test"),
    "fsd50k.py": (64, 2.5, "validation", "test"),
    "speech_commands.py": (128, 1.0, "validation", "test"),
    "voxceleb1.py": (128, 2.5, "validation", "test"),
}
V3_8_CORES = 8


@pytest.mark.parametrize("name,arg", [c for c in CASES if c[0] in THESIS])
def test_configs_carry_the_thesis_values(name, arg):
  c = load(name, arg)
  batch, crop, eval_split, test_split = THESIS[name]
  assert c.batch_size == batch and c.batch_size % V3_8_CORES == 0
  assert c.crop_seconds == crop
  assert (c.eval_split, c.test_split) == (eval_split, test_split)
  fine_tune = c.init != "scratch" and not c.freeze_encoder
  assert c.learning_rate == (1e-4 if fine_tune else 1e-3)
  assert c.weight_decay == 1e-3 and not c.decoupled_weight_decay
  assert c.warmup_epochs == 10 and c.total_steps < 0 and c.warmup_steps < 0
  on = {k for k in ("gain", "noise", "masks", "mix")
        if c.augment[f"use_{k}"]}
  if c.task == "simclr":
    assert c.num_crops == 2 and c.temperature == (
        float(arg.split("tau=")[1].split(",")[0]) if arg and "tau=" in arg
        else 0.1)
    if not arg or "aug=" not in arg:
      assert on == {"gain", "noise", "masks", "mix"}
  else:
    # Gain, noise, masks and mixup for every supervised model (linear eval
    # too); background injection is SimCLR's only.
    assert on == {"gain", "noise", "masks"} and c.mixup_alpha > 0
    # Model selection on validation, never on the test split.
    assert c.best_metric.startswith("eval/")
    assert c.eval_split != c.test_split


def test_per_core_batch_is_documented():
  """The docstrings say what each global batch is per core of a v3-8."""
  for name, (batch, _, _, _) in THESIS.items():
    with open(os.path.join(CONFIG_DIR, name)) as f:
      doc = f.read().split('"""')[1]
    assert f"{batch}" in doc and "v3-8" in doc, name
    assert "thesis ch. 4" in doc, name
    per_core = batch // V3_8_CORES
    assert f"{per_core} per core" in doc, name


@pytest.mark.parametrize("name", ["demo_simclr.py", "demo_supervised.py"])
def test_demo_configs_say_how_they_differ(name):
  c = load(name)
  with open(os.path.join(CONFIG_DIR, name)) as f:
    doc = f.read().split('"""')[1]
  assert "differs from" in doc
  assert c.test_split != c.eval_split or not c.test_split
  if c.task == "supervised":
    assert c.eval_split == "validation" and c.test_split == "test"
    assert not c.augment.use_mix


# ------------------------------------------------- config_check, generically


def _validatable(name, arg, tmp_path):
  """The config as a user runs it: a transferred encoder names its run and
  configs/folder.py its folder (both given on the command line)."""
  if name == "folder.py":
    arg = arg.replace("/data/my_sounds", str(tmp_path)).replace(
        "/data/x", str(tmp_path))
  c = load(name, arg)
  if c.init != "scratch":
    c.init_from = str(tmp_path)
  return c


@pytest.mark.parametrize("name,arg", CASES)
def test_config_check_accepts_every_shipped_config(name, arg, tmp_path):
  config_check.validate(_validatable(name, arg, tmp_path))


@pytest.mark.parametrize("name", sorted({f for f, _ in CASES}))
def test_config_check_accepts_the_defaults_unchanged(name):
  if name == "folder.py":
    pytest.skip("needs path=")
  c = load(name)
  config_check.validate(c, check_paths=False)
  # Every field of every shipped config has a domain in the one table.
  assert {n for n, _ in config_check.fields(c)} <= set(config_check.FIELDS)


def _with(config, name, value):
  """A copy of ``config`` (a plain ConfigDict: any type may go in) with
  dotted field ``name`` set to ``value``."""
  tree = copy.deepcopy(config.to_dict())
  node = tree
  *parents, leaf = name.split(".")
  for part in parents:
    node = node[part]
  node[leaf] = value
  return ml_collections.ConfigDict(tree, type_safe=False)


def _every_field_of_every_config(tmp_path):
  seen = set()
  for name, arg in CASES:
    c = _validatable(name, arg, tmp_path)
    for field, _ in config_check.fields(c):
      if (name, field) not in seen:
        seen.add((name, field))
        yield name, c, field


def test_config_check_refuses_a_bad_value_of_every_field(tmp_path):
  """For every field of every shipped config, each value its domain names
  as outside it (wrong type, out of range, unknown choice) is refused with
  one UserError naming the field and the value."""
  tried = 0
  for name, c, field in _every_field_of_every_config(tmp_path):
    domain = config_check.FIELDS[field]
    bad_values = domain.bad_values()
    assert bad_values, field
    for value in bad_values:
      with pytest.raises(config_check.UserError) as caught:
        config_check.validate(_with(c, field, value))
      message = str(caught.value)
      assert f"config.{field}" in message, (name, field, value, message)
      if type(value) in (int, float, str):
        assert repr(value) in message or str(value) in message, (
            name, field, value, message)
      tried += 1
  assert tried > 500


def test_config_check_refuses_unknown_and_missing_fields():
  c = load("demo_simclr.py")
  with pytest.raises(config_check.UserError, match="config.batchsize is not "
                     "a field.*config.batch_size"):
    config_check.validate(_with(c, "batchsize", 8))
  tree = c.to_dict()
  del tree["augment"]["mix_p"]
  with pytest.raises(config_check.UserError,
                     match="config.augment.mix_p is missing"):
    config_check.validate(ml_collections.ConfigDict(tree))


@pytest.mark.parametrize("name,changes,words", [
    ("demo_simclr.py", {"total_steps": -1, "num_epochs": 0},
     "num_epochs must be > 0 when config.total_steps"),
    ("demo_simclr.py", {"num_crops": 1}, "2 for SimCLR"),
    ("demo_simclr.py", {"listen_layers": (12,)}, "1..11"),
    ("demo_simclr.py", {"eval_split": "dev"}, "split of embedded"),
    ("demo_simclr.py", {"init_from": "/nonexistent"}, "for supervised runs"),
    ("demo_supervised.py", {"init": "contrastive"}, "needs the source run"),
    ("demo_supervised.py", {"test_split": "validation"},
     "eval_split == config.test_split"),
    ("demo_supervised.py", {"init": "contrastive",
                            "init_from": "/nonexistent/run"},
     "init_from='/nonexistent/run' does not exist"),
    ("fsd50k.py", {"train_split": "balanced_train"}, "split of fsd50k"),
])
def test_config_check_rules_between_fields(name, changes, words):
  c = load(name)
  for field, value in changes.items():
    c = _with(c, field, value)
  with pytest.raises(config_check.UserError, match=words.replace(
      ".", r"\.").replace("(", r"\(")):
    config_check.validate(c)
