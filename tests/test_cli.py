"""cli.run: the error rule every entry point shares, driven in-process."""
import pytest
from absl import flags
from ml_collections import config_flags

from sonify_jax import cli
from sonify_jax.errors import UserError

_VALUE = flags.DEFINE_integer("cli_test_value", 1, "A flag of this test.")
_CONFIG = config_flags.DEFINE_config_file("cli_test_config", None, "A config.")

_CONFIG_FILE = '''
import ml_collections
def get_config(arg=None):
  if arg not in (None, "good"):
    raise ValueError(f"arg={arg!r}; choose from ['good']")
  c = ml_collections.ConfigDict()
  c.batch_size = 8
  c.optim = ml_collections.ConfigDict({"learning_rate": 0.1})
  return c
'''


def _run(main, *args, capsys):
  with pytest.raises(SystemExit) as exit_:
    cli.run(main, ["prog", *args])
  out, err = capsys.readouterr()
  return exit_.value.code, out, err


def _error_line(err):
  lines = [l for l in err.splitlines() if l.startswith("error:")]
  assert len(lines) == 1, err
  assert "Traceback" not in err
  return lines[0]


def test_user_error_is_one_line_and_exit_2(capsys):
  def main(argv):
    raise UserError("bad thing\nsecond line")
  code, _, err = _run(main, capsys=capsys)
  assert code == 2
  assert _error_line(err) == "error: bad thing second line"


def test_user_path_errors_are_one_line(capsys, tmp_path):
  def main(argv):
    open(tmp_path / "missing.txt")
  code, _, err = _run(main, capsys=capsys)
  assert code == 2 and "missing.txt" in _error_line(err)


def test_a_bug_keeps_its_traceback(capsys):
  def main(argv):
    raise KeyError("internal")
  with pytest.raises(KeyError):
    cli.run(main, ["prog"])


def test_success_exits_0_and_flags_are_reparsed(capsys):
  seen = []
  def main(argv):
    seen.append(_VALUE.value)
  for args in (["--cli_test_value=5"], []):
    code, _, _ = _run(main, *args, capsys=capsys)
    assert not code  # sys.exit(None)
  assert seen == [5, 1]  # the second run does not inherit the first's flags


@pytest.mark.parametrize("args,expected", [
    (["--cli_test_value=x"], "error: flag --cli_test_value=x:"),
    (["--no_such_flag"], "error: Unknown command line flag 'no_such_flag'"),
])
def test_bad_flags(capsys, args, expected):
  code, _, err = _run(lambda argv: None, *args, capsys=capsys)
  assert code == 2 and _error_line(err).startswith(expected)


def test_help_exits_0_with_usage(capsys):
  code, out, _ = _run(lambda argv: None, "--help", capsys=capsys)
  assert code == 0 and "--helpfull" in out  # usage goes to stdout


@pytest.mark.parametrize("override,expected", [
    ("--cli_test_config.batchsize=3",
     "unknown config field 'batchsize' in --cli_test_config.batchsize=3; "
     "the closest valid field is 'batch_size'"),
    ("--cli_test_config.optim.learning_rat=3",
     "unknown config field 'optim.learning_rat' in "
     "--cli_test_config.optim.learning_rat=3; the closest valid field is "
     "'optim.learning_rate'"),
    ("--cli_test_config.optimizer.x=3",
     "unknown config field 'optimizer' in --cli_test_config.optimizer.x=3; "
     "the closest valid field is 'optim'"),
])
def test_unknown_config_field_names_the_closest(capsys, tmp_path, override,
                                               expected):
  path = tmp_path / "cfg.py"
  path.write_text(_CONFIG_FILE)
  code, _, err = _run(lambda argv: None, f"--cli_test_config={path}",
                      override, capsys=capsys)
  assert code == 2 and _error_line(err) == f"error: {expected}"


def test_config_arg_and_missing_config_file(capsys, tmp_path):
  path = tmp_path / "cfg.py"
  path.write_text(_CONFIG_FILE)
  code, _, err = _run(lambda argv: None, f"--cli_test_config={path}:bad",
                      capsys=capsys)
  assert code == 2
  assert _error_line(err).endswith("arg='bad'; choose from ['good']")
  code, _, err = _run(lambda argv: None,
                      f"--cli_test_config={tmp_path}/none.py", capsys=capsys)
  assert code == 2 and "No such file" in _error_line(err)
  seen = []
  code, _, err = _run(lambda argv: seen.append(_CONFIG.value.batch_size),
                      f"--cli_test_config={path}:good",
                      "--cli_test_config.batch_size=4", capsys=capsys)
  assert not code and seen == [4]
