"""Launchers: the exact commands of launch.tpu_vm and launch.sweep.

The remote shell text is also *executed* here (with a fake ``python3`` that
records its argv and a temporary $HOME), which checks the quoting
independently of how the text was built: the argv that arrives must be the
argv we meant, spaces and all.
"""
import json
import os
import shlex
import stat
import subprocess
import sys
import textwrap
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from launch import sweep  # pylint: disable=g-import-not-at-top
from launch import tpu_vm  # pylint: disable=g-import-not-at-top

GCLOUD = ["gcloud", "compute", "tpus", "tpu-vm"]


def _spec(**kw):
  kw.setdefault("name", "sonify-vm")
  kw.setdefault("zone", "europe-west4-a")
  return tpu_vm.TpuVmSpec(**kw)


def _cli(module, *args):
  """Runs ``python -m launch.<module> args`` (no JAX import: fast)."""
  env = dict(os.environ, PYTHONPATH=REPO)
  return subprocess.run([sys.executable, "-m", f"launch.{module}", *args],
                        cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=60)


def _remote(argv):
  """The ``--command=`` text of a gcloud ssh argv."""
  (cmd,) = [a for a in argv if a.startswith("--command=")]
  return cmd[len("--command="):]


def _fake_bin(tmp_path, bindir, name="python"):
  """An executable ``bindir/name`` that records its argv (NUL-separated)."""
  bindir.mkdir(parents=True, exist_ok=True)
  record = tmp_path / f"{name}.argv"
  script = bindir / name
  script.write_text(textwrap.dedent(f"""\
      #!/bin/sh
      for a in "$@"; do printf '%s\\0' "$a"; done > {shlex.quote(str(record))}.tmp
      mv {shlex.quote(str(record))}.tmp {shlex.quote(str(record))}
      """))
  script.chmod(script.stat().st_mode | stat.S_IEXEC)
  return bindir, record


def _wait_for(path, timeout=20.0):
  deadline = time.time() + timeout
  while not path.exists():
    if time.time() > deadline:
      raise AssertionError(f"{path} never appeared")
    time.sleep(0.05)
  return path.read_bytes().split(b"\0")[:-1]


# ------------------------------------------------------------------ tpu_vm


def test_create_and_delete_argv():
  spec = _spec(project="my-proj", accelerator_type="v3-32", spot=True)
  assert tpu_vm.create_command(spec) == GCLOUD + [
      "create", "sonify-vm", "--zone=europe-west4-a", "--project=my-proj",
      "--accelerator-type=v3-32", "--version=tpu-ubuntu2204-base", "--spot"]
  assert tpu_vm.delete_command(spec) == GCLOUD + [
      "delete", "sonify-vm", "--zone=europe-west4-a", "--project=my-proj",
      "--quiet"]
  assert tpu_vm.create_command(_spec(version="v2-alpha", preemptible=True)) \
      == GCLOUD + ["create", "sonify-vm", "--zone=europe-west4-a",
                   "--accelerator-type=v3-8", "--version=v2-alpha",
                   "--preemptible"]


def test_dry_run_prints_exact_commands_and_runs_nothing(tmp_path):
  tarball = tmp_path / "src.tar.gz"
  res = _cli("tpu_vm", "up", "--name=vm1", "--zone=us-central1-a",
             f"--local_repo={REPO}", f"--tarball={tarball}",
             "--config=configs/demo_simclr.py:tau=0.1",
             "--workdir=gs://bucket/run 1", "--extra=--config.seed=3",
             "--dry_run")
  assert res.returncode == 0, res.stderr
  lines = res.stdout.strip().splitlines()
  argvs = [shlex.split(line) for line in lines]
  assert argvs[0] == GCLOUD + ["create", "vm1", "--zone=us-central1-a",
                               "--accelerator-type=v3-8",
                               "--version=tpu-ubuntu2204-base"]
  assert argvs[1] == ["tar", "czf", str(tarball), "--exclude=.git",
                      "--exclude=__pycache__", "-C", REPO, "."]
  assert argvs[2] == GCLOUD + ["scp", str(tarball), "vm1:src.tar.gz",
                               "--zone=us-central1-a", "--worker=all"]
  assert argvs[3][:8] == GCLOUD + ["ssh", "vm1", "--zone=us-central1-a",
                                   "--worker=all"]
  assert ("uv pip install --python \"$HOME\"/sonify_venv/bin/python -U "
          "'jax[tpu]' gcsfs") in _remote(argvs[3])
  assert argvs[4][:8] == argvs[3][:8]
  spec = _spec(name="vm1", zone="us-central1-a")
  # The printed line is the shell-quoted form of the argv we build.
  assert lines[4] == shlex.join(tpu_vm.run_command(
      spec, "configs/demo_simclr.py:tau=0.1", "gs://bucket/run 1",
      ["--config.seed=3"]))
  assert not tarball.exists()  # dry run: nothing executed


def test_run_remote_command_delivers_exact_argv(tmp_path):
  """Executes the remote text: the training argv survives quoting."""
  home = tmp_path / "home dir"
  (home / "my repo").mkdir(parents=True)
  _, record = _fake_bin(tmp_path, home / "my venv" / "bin")
  spec = _spec(remote_dir="my repo", log_file="logs/train 1.log",
               env=("TFDS_DATA_DIR=gs://b/tf ds",), venv="my venv")
  (home / "logs").mkdir()
  config = "configs/demo simclr.py:tau=0.1,aug=no_mix"
  workdir = "/tmp/work dir/it's"
  remote = tpu_vm.run_remote_command(spec, config, workdir,
                                     ["--config.batch_size=8"])
  env = dict(os.environ, HOME=str(home))
  out = subprocess.run(["bash", "-c", remote], env=env, capture_output=True,
                       text=True, timeout=30)
  assert out.returncode == 0, out.stderr
  assert _wait_for(record) == [
      b"-m", b"sonify_jax.main", f"--config={config}".encode(),
      f"--workdir={workdir}".encode(), b"--config.batch_size=8"]
  pid = int((home / tpu_vm.PID_FILE).read_text())
  assert pid > 0 and (home / "logs" / "train 1.log").exists()


def test_analyze_starts_the_study_on_every_worker(tmp_path):
  """'analyze' runs analysis.run's exact argv, detached, on all workers;
  a multi-host slice needs a shared workdir."""
  res = _cli("tpu_vm", "analyze", "--name=vm1", "--zone=us-central1-a",
             "--accelerator_type=v3-32", "--study=atlas",
             "--workdir=gs://bucket/atlas 1",
             "--extra=--checkpoint=gs://bucket/run", "--extra=--k=5",
             "--dry_run")
  assert res.returncode == 0, res.stderr
  (argv,) = [shlex.split(line) for line in res.stdout.strip().splitlines()]
  assert argv[:8] == GCLOUD + ["ssh", "vm1", "--zone=us-central1-a",
                               "--worker=all"]
  home = tmp_path / "home"
  (home / "sonify_jax").mkdir(parents=True)
  _, record = _fake_bin(tmp_path, home / "sonify_venv" / "bin")
  out = subprocess.run(["bash", "-c", _remote(argv)],
                       env=dict(os.environ, HOME=str(home)),
                       capture_output=True, text=True, timeout=30)
  assert out.returncode == 0, out.stderr
  assert _wait_for(record) == [
      b"-m", b"sonify_jax.analysis.run", b"--study=atlas",
      b"--workdir=gs://bucket/atlas 1", b"--checkpoint=gs://bucket/run",
      b"--k=5"]
  local = _cli("tpu_vm", "analyze", "--name=vm1", "--zone=us-central1-a",
               "--accelerator_type=v3-32", "--study=atlas",
               "--workdir=/tmp/atlas", "--dry_run")
  assert local.returncode != 0 and "must be on GCS" in local.stderr
  missing = _cli("tpu_vm", "analyze", "--name=vm1", "--zone=us-central1-a",
                 "--workdir=gs://b/a", "--dry_run")
  assert missing.returncode != 0 and "--study is required" in missing.stderr


def test_setup_remote_command_is_valid_shell():
  for spec in (_spec(), _spec(repo_url="https://x/r e.git", repo_ref="v1"),
               _spec(venv="", mount_bucket="b k", mount_point="/mnt/g s")):
    remote = _remote(tpu_vm.setup_commands(spec)[-1])
    assert subprocess.run(["bash", "-n", "-c", remote],
                          timeout=10).returncode == 0
  remote = _remote(tpu_vm.setup_commands(
      _spec(repo_url="https://x/r e.git", repo_ref="v1"))[-1])
  assert "git clone 'https://x/r e.git' \"$HOME\"/sonify_jax" in remote
  assert "checkout v1" in remote


def test_logs_stop_and_status():
  spec = _spec()
  assert tpu_vm.logs_command(spec, worker="2", lines=5) == GCLOUD + [
      "ssh", "sonify-vm", "--zone=europe-west4-a", "--worker=2",
      '--command=tail -n 5 "$HOME"/sonify_jax_train.log']
  assert tpu_vm.describe_command(spec) == GCLOUD + [
      "describe", "sonify-vm", "--zone=europe-west4-a"]
  stop = _remote(tpu_vm.stop_command(spec))
  assert subprocess.run(["bash", "-n", "-c", stop], timeout=10).returncode == 0


def test_bad_launch_requests_are_refused():
  with pytest.raises(ValueError, match="GCS"):
    tpu_vm.run_command(_spec(accelerator_type="v3-32"), "c.py", "/local")
  # A gcsfuse mount is shared by all hosts: accepted, and (re)mounted first.
  remote = _remote(tpu_vm.run_command(
      _spec(accelerator_type="v3-32", mount_bucket="bkt"), "c.py",
      "/mnt/gcs/runs/1"))
  assert "mountpoint -q /mnt/gcs || gcsfuse --implicit-dirs bkt /mnt/gcs" \
      in remote
  with pytest.raises(ValueError, match="config"):
    tpu_vm.run_command(_spec(), "", "gs://b/w")
  with pytest.raises(ValueError, match="zone"):
    _spec(zone="")
  with pytest.raises(ValueError, match="spot"):
    _spec(spot=True, preemptible=True)
  with pytest.raises(ValueError, match="KEY=VALUE"):
    _spec(env=("NOEQUALS",))
  with pytest.raises(ValueError, match="runtime version"):
    _ = _spec(accelerator_type="v9-8").runtime_version
  assert tpu_vm.num_hosts("v3-32") == 4 and tpu_vm.num_hosts("v3-8") == 1
  res = _cli("tpu_vm", "explode", "--name=a", "--zone=z", "--dry_run")
  assert res.returncode != 0 and "ACTION" in res.stderr


# ------------------------------------------------------------------- sweep

CONFIG_TEXT = '''
import ml_collections


def get_config(arg=None):
  items = dict(kv.split("=") for kv in (arg or "").split(",") if kv)
  unknown = set(items) - {"tau", "aug", "model"}
  if unknown:
    raise ValueError(f"unknown config arg {sorted(unknown)}")
  c = ml_collections.ConfigDict()
  c.temperature = float(items.get("tau", 0.2))
  c.aug = items.get("aug", "all")
  c.model = items.get("model", "cnn12")
  c.batch_size = 256
  c.seed = 0
  c.augment = ml_collections.ConfigDict(dict(use_mix=True))
  return c
'''


@pytest.fixture
def config_dir(tmp_path):
  d = tmp_path / "my configs"
  d.mkdir()
  (d / "simclr.py").write_text(CONFIG_TEXT)
  (d / "swept.py").write_text(CONFIG_TEXT + textwrap.dedent('''
      def get_sweep(arg=None):
        return [dict(tau=t, **{"config.augment.use_mix": m})
                for t in (0.1, 0.3) for m in (True, False)]
      '''))
  return d


def test_sweep_dry_run_prints_one_command_per_setting(config_dir):
  cfg = config_dir / "simclr.py"
  res = _cli("sweep", f"--config={cfg}:model=cnn12_x2",
             "--workdir=/tmp/sweep root", "--sweep=tau=0.1,0.2",
             "--sweep=aug=all,no_mix", "--sweep=config.batch_size=64",
             "--local_python=python", "--dry_run")
  assert res.returncode == 0, res.stderr
  expected = []
  for tau in ("0.1", "0.2"):
    for aug in ("all", "no_mix"):
      name = f"tau={tau},aug={aug},batch_size=64"
      expected.append(shlex.join([
          "python", "-m", "sonify_jax.main",
          f"--config={cfg}:model=cnn12_x2,tau={tau},aug={aug}",
          f"--workdir=/tmp/sweep root/{name}", "--config.batch_size=64"]))
  assert res.stdout.strip().splitlines() == expected
  # The ' x ' form of the task statement gives the same jobs.
  axes = sweep.parse_sweep_axes(["'tau=0.1,0.2' x 'aug=all,no_mix'"])
  assert axes == [("tau", ["0.1", "0.2"]), ("aug", ["all", "no_mix"])]


def test_sweep_seeds_dry_run(config_dir):
  cfg = config_dir / "simclr.py"
  # No settings: seed0..2 directly under the workdir.
  res = _cli("sweep", f"--config={cfg}", "--workdir=/w", "--seeds=3",
             "--local_python=python", "--dry_run")
  assert res.returncode == 0, res.stderr
  assert res.stdout.strip().splitlines() == [shlex.join([
      "python", "-m", "sonify_jax.main", f"--config={cfg}",
      f"--workdir=/w/seed{i}", f"--config.seed={i}"]) for i in range(3)]
  # With a sweep axis: every setting times every seed, seeds innermost.
  res = _cli("sweep", f"--config={cfg}", "--workdir=/w", "--seeds=2",
             "--sweep=tau=0.1,0.2", "--local_python=python", "--dry_run")
  assert res.returncode == 0, res.stderr
  assert res.stdout.strip().splitlines() == [shlex.join([
      "python", "-m", "sonify_jax.main", f"--config={cfg}:tau={tau}",
      f"--workdir=/w/tau={tau}/seed{i}", f"--config.seed={i}"])
      for tau in ("0.1", "0.2") for i in range(2)]
  jobs = sweep.make_jobs(str(cfg), "/w", None, seeds=2)
  assert [j.name for j in jobs] == ["seed0", "seed1"]
  with pytest.raises(ValueError, match="seeds"):
    sweep.make_jobs(str(cfg), "/w", None, seeds=-1)


def test_sweep_from_config_get_sweep(config_dir):
  cfg = str(config_dir / "swept.py")
  settings = sweep.settings_from_config(cfg, None)
  jobs = sweep.make_jobs(cfg, "gs://b/runs", settings)
  sweep.validate_jobs(jobs)
  assert [j.main_args() for j in jobs] == [
      [f"--config={cfg}:tau=0.1", "--workdir=gs://b/runs/tau=0.1,"
       "augment.use_mix=True", "--config.augment.use_mix=True"],
      [f"--config={cfg}:tau=0.1", "--workdir=gs://b/runs/tau=0.1,"
       "augment.use_mix=False", "--config.augment.use_mix=False"],
      [f"--config={cfg}:tau=0.3", "--workdir=gs://b/runs/tau=0.3,"
       "augment.use_mix=True", "--config.augment.use_mix=True"],
      [f"--config={cfg}:tau=0.3", "--workdir=gs://b/runs/tau=0.3,"
       "augment.use_mix=False", "--config.augment.use_mix=False"]]
  # No sweep anywhere: one job in the workdir itself.
  (only,) = sweep.make_jobs(str(config_dir / "simclr.py"), "/w",
                            sweep.settings_from_config(
                                str(config_dir / "simclr.py"), None))
  assert only.main_args() == [f"--config={config_dir / 'simclr.py'}",
                              "--workdir=/w"]


def test_sweep_on_tpu_vms(config_dir):
  cfg = str(config_dir / "simclr.py")
  jobs = sweep.make_jobs(cfg, "gs://b/r", sweep.product(
      sweep.parse_sweep_axes(["tau=0.1,0.2"])))
  spec = _spec(name="sw", accelerator_type="v3-32")
  commands = sweep.tpu_commands(spec, jobs, "per_job")
  creates = [c for c in commands if c[4] == "create"]
  assert [c[5] for c in creates] == ["sw-0", "sw-1"]
  runs = [c for c in commands if c[4] == "ssh" and
          "sonify_jax.main" in _remote(c)]
  assert runs == [tpu_vm.run_command(_spec(name=f"sw-{i}",
                                           accelerator_type="v3-32"),
                                     j.config, j.workdir)
                  for i, j in enumerate(jobs)]
  (shared,) = sweep.tpu_commands(spec, jobs, "shared")
  remote = _remote(shared)
  assert subprocess.run(["bash", "-n", "-c", remote],
                        timeout=10).returncode == 0
  assert remote.count("sonify_jax.main") == 2
  with pytest.raises(ValueError, match="GCS"):
    sweep.tpu_commands(spec, sweep.make_jobs(cfg, "/local", [{"tau": 1}]),
                       "shared")


def test_shared_vm_jobs_run_in_sequence_with_exact_argv(tmp_path, config_dir):
  home = tmp_path / "home"
  (home / "sonify_jax").mkdir(parents=True)
  bindir, record = _fake_bin(tmp_path, tmp_path / "bin", "python3")
  cfg = str(config_dir / "simclr.py")
  jobs = sweep.make_jobs(cfg, "/tmp/w w", [{"tau": 0.1}])
  remote = _remote(sweep.tpu_commands(_spec(venv=""), jobs, "shared")[0])
  env = dict(os.environ, HOME=str(home),
             PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
  assert subprocess.run(["bash", "-c", remote], env=env,
                        timeout=30).returncode == 0
  assert _wait_for(record) == [b"-m", b"sonify_jax.main",
                               f"--config={cfg}:tau=0.1".encode(),
                               b"--workdir=/tmp/w w/tau=0.1"]


def test_sweep_rejects_bad_settings(config_dir):
  cfg = str(config_dir / "simclr.py")
  with pytest.raises(ValueError, match="no field"):
    sweep.validate_jobs(sweep.make_jobs(cfg, "/w", [{"config.nope": 1}]))
  with pytest.raises(ValueError, match="unknown config arg"):
    sweep.validate_jobs(sweep.make_jobs(cfg, "/w", [{"tua": 1}]))
  with pytest.raises(ValueError, match="empty value"):
    sweep.parse_sweep_axes(["tau=0.1,,0.2"])
  with pytest.raises(ValueError, match="twice"):
    sweep.parse_sweep_axes(["tau=1", "tau=2"])
  with pytest.raises(ValueError, match="not key="):
    sweep.parse_sweep_axes(["tau"])
  with pytest.raises(ValueError, match="bad sweep key"):
    sweep.parse_sweep_axes(["a b=1"])
  with pytest.raises(FileNotFoundError):
    sweep.settings_from_config(str(config_dir / "missing.py"), None)
  res = _cli("sweep", f"--config={cfg}", "--workdir=/w", "--sweep=tua=1",
             "--dry_run")
  assert res.returncode != 0 and "unknown config arg" in res.stderr


def test_local_sweep_runs_in_order_and_resumes(tmp_path, config_dir):
  cfg = str(config_dir / "simclr.py")
  workdir = str(tmp_path / "sweep")
  jobs = sweep.make_jobs(cfg, workdir, sweep.product(
      [("tau", [0.1, 0.2, 0.3])]))
  calls = []

  class Done:
    def __init__(self, rc):
      self.returncode = rc

  def fails_on_second(argv):
    calls.append(argv)
    return Done(1 if len(calls) == 2 else 0)

  with pytest.raises(RuntimeError, match="tau=0.2"):
    sweep.run_local(jobs, "py", workdir, runner=fails_on_second)
  manifest = json.load(open(os.path.join(workdir, "sweep.json")))
  assert {k: v["status"] for k, v in manifest["jobs"].items()} == {
      "tau=0.1": "done", "tau=0.2": "failed"}
  assert calls == [sweep.local_command(j, "py") for j in jobs[:2]]
  calls.clear()
  statuses = sweep.run_local(jobs, "py", workdir, skip_done=True,
                             runner=lambda argv: calls.append(argv) or Done(0))
  assert statuses == {"tau=0.1": "skipped", "tau=0.2": "done",
                      "tau=0.3": "done"}
  assert calls == [sweep.local_command(j, "py") for j in jobs[1:]]
