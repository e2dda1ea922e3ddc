r"""Cloud TPU VM launcher: create, set up, train on every host, logs, delete.

Every action is a list of commands (gcloud argv lists, and for the tarball
install one local ``tar``); ``--dry_run`` prints them, one per line, exactly
as they would run (``shlex.join``), and executes nothing.

  python -m launch.tpu_vm up --name=sonify-v3-32 --zone=europe-west4-a \
      --accelerator_type=v3-32 --config=configs/simclr_audioset.py:tau=0.1 \
      --workdir=gs://my-bucket/runs/simclr_tau0.1 \
      --extra=--config.data_dir=gs://my-bucket/tfds --dry_run

Actions:
  create   gcloud compute tpus tpu-vm create (with --spot / --preemptible).
  setup    install ``jax[tpu]`` and this repo on all workers (git clone of
           --repo_url, or a tarball of the local checkout copied with scp).
  run      start ``python3 -m sonify_jax.main`` on all workers under nohup
           (survives the ssh session; pid and log in the home directory).
           Re-running it after a preemption resumes from the workdir's latest
           checkpoint.
  analyze  start ``python3 -m sonify_jax.analysis.run --study=STUDY`` the
           same way on all workers (--study, --workdir, and the study's
           flags as --extra): the atlas splits its clips over every host
           (docs/atlas_budget.md) and resumes each host's share when
           re-run.
  up       create + setup + run.
  check    run ``launch.multihost_check`` on all workers (multi-host smoke
           test; every worker must print the same losses).
  logs     tail the training log (--worker, default 0; --follow to stream).
  stop     kill the training process on all workers (by its pid file).
  status   gcloud compute tpus tpu-vm describe.
  delete   gcloud compute tpus tpu-vm delete --quiet.

Remote relative paths (--remote_dir, --log_file) are relative to the home
directory of the ssh user on each worker.
"""
import dataclasses
import os
import shlex
import subprocess
import sys
from typing import List, Optional, Sequence

from absl import app
from absl import flags
from absl import logging

from sonify_jax import cli
from sonify_jax import flag_check
from sonify_jax.domains import Int, OrNone, Path, Text, TextList

ACTIONS = ("create", "setup", "run", "up", "analyze", "check", "logs", "stop",
           "status", "delete")

# TPU VM software versions per TPU generation (cloud.google.com/tpu/docs/
# runtimes); JAX itself comes from pip (jax[tpu]), the image only needs the
# driver.
DEFAULT_RUNTIME_VERSIONS = {
    "v2": "tpu-ubuntu2204-base",
    "v3": "tpu-ubuntu2204-base",
    "v4": "tpu-ubuntu2204-base",
    "v5litepod": "v2-alpha-tpuv5-lite",
    "v5p": "v2-alpha-tpuv5",
    "v6e": "v2-alpha-tpuv6e",
}

GCLOUD_TPU = ("gcloud", "compute", "tpus", "tpu-vm")
PID_FILE = "sonify_jax_train.pid"


@dataclasses.dataclass
class TpuVmSpec:
  """What the commands are built from (the flags, as a plain object).

  Attributes:
    name: TPU VM name.
    zone: e.g. 'europe-west4-a' (v3 TPUs: europe-west4-a, us-central1-a).
    project: GCP project; None uses gcloud's configured default.
    accelerator_type: 'v3-8' (1 host) or a pod slice 'v3-32' (4 hosts).
    version: TPU VM runtime image; None picks from the accelerator type.
    spot: create a Spot VM (cheaper, may be preempted).
    preemptible: create a legacy preemptible VM.
    repo_url: git URL to clone on the workers; None: copy a tarball of
      ``local_repo``.
    repo_ref: branch, tag or commit to check out ('' keeps the default).
    local_repo: checkout to tar up when ``repo_url`` is None.
    tarball: local path of that tarball.
    remote_dir: where the repo lives on the workers.
    jax_spec: pip requirement for JAX on TPU.
    venv: virtualenv on the workers (relative: to $HOME) that ``setup``
      creates with uv for ``python_version``; '' uses ``python`` as is. The
      TPU images ship Python 3.10 and JAX >= 0.7 needs 3.11+.
    python_version: Python of the venv.
    python: the workers' Python when ``venv`` is ''.
    extra_pip: more pip requirements for the workers (gcsfs: gs:// paths for
      TFDS and epath without TensorFlow).
    mount_bucket: GCS bucket to mount with gcsfuse at ``mount_point`` on
      every worker (a shared filesystem path for code that needs POSIX
      paths); None: no mount.
    mount_point: where the bucket is mounted.
    log_file: training log on the workers.
    env: 'KEY=VALUE' environment settings for the training process.
  """
  name: str
  zone: str
  project: Optional[str] = None
  accelerator_type: str = "v3-8"
  version: Optional[str] = None
  spot: bool = False
  preemptible: bool = False
  repo_url: Optional[str] = None
  repo_ref: str = ""
  local_repo: str = "."
  tarball: str = "/tmp/sonify_jax_src.tar.gz"
  remote_dir: str = "sonify_jax"
  jax_spec: str = "jax[tpu]"
  venv: str = "sonify_venv"
  python_version: str = "3.11"
  python: str = "python3"
  extra_pip: Sequence[str] = ("gcsfs",)
  mount_bucket: Optional[str] = None
  mount_point: str = "/mnt/gcs"
  log_file: str = "sonify_jax_train.log"
  env: Sequence[str] = ()

  def __post_init__(self):
    if not self.name:
      raise ValueError("a TPU VM --name is required")
    if not self.zone:
      raise ValueError("a --zone is required (e.g. europe-west4-a)")
    if self.spot and self.preemptible:
      raise ValueError("choose one of --spot and --preemptible")
    for item in self.env:
      key = item.split("=", 1)[0]
      if "=" not in item or not key.replace("_", "a").isalnum():
        raise ValueError(f"--env items must be KEY=VALUE, got {item!r}")

  @property
  def python_text(self) -> str:
    """Shell text of the workers' Python executable."""
    if self.venv:
      return remote_path(self.venv.rstrip("/") + "/bin/python")
    return shlex.quote(self.python)

  @property
  def runtime_version(self) -> str:
    if self.version:
      return self.version
    family = self.accelerator_type.rsplit("-", 1)[0]
    if family not in DEFAULT_RUNTIME_VERSIONS:
      raise ValueError(f"no default runtime version for accelerator "
                       f"{self.accelerator_type!r}; pass --version")
    return DEFAULT_RUNTIME_VERSIONS[family]


def remote_path(path: str) -> str:
  """Shell text for a worker path: relative paths hang off ``$HOME``.

  ``~`` would not expand inside quotes, so the home directory is spelled
  ``"$HOME"`` and only the rest is quoted.
  """
  if path.startswith("/"):
    return shlex.quote(path)
  if path.startswith("~/"):
    path = path[2:]
  return '"$HOME"/' + shlex.quote(path)


def _scope(spec: TpuVmSpec) -> List[str]:
  flags_ = [f"--zone={spec.zone}"]
  if spec.project:
    flags_.append(f"--project={spec.project}")
  return flags_


def create_command(spec: TpuVmSpec) -> List[str]:
  argv = list(GCLOUD_TPU) + ["create", spec.name] + _scope(spec) + [
      f"--accelerator-type={spec.accelerator_type}",
      f"--version={spec.runtime_version}"]
  if spec.spot:
    argv.append("--spot")
  if spec.preemptible:
    argv.append("--preemptible")
  return argv


def delete_command(spec: TpuVmSpec) -> List[str]:
  return list(GCLOUD_TPU) + ["delete", spec.name] + _scope(spec) + ["--quiet"]


def describe_command(spec: TpuVmSpec) -> List[str]:
  return list(GCLOUD_TPU) + ["describe", spec.name] + _scope(spec)


def ssh_command(spec: TpuVmSpec, remote: str, worker: str = "all"
                ) -> List[str]:
  """``gcloud ... ssh NAME --worker=W --command=REMOTE``.

  With ``--worker=all`` gcloud runs ``remote`` on every host of the slice
  in parallel.
  """
  return list(GCLOUD_TPU) + ["ssh", spec.name] + _scope(spec) + [
      f"--worker={worker}", f"--command={remote}"]


def scp_command(spec: TpuVmSpec, local: str, remote: str,
                worker: str = "all") -> List[str]:
  return list(GCLOUD_TPU) + ["scp", local, f"{spec.name}:{remote}"] + \
      _scope(spec) + [f"--worker={worker}"]


def _remote_prelude() -> str:
  # pip --user and uv put console scripts here; gcloud ssh runs a non-login
  # shell.
  return 'set -e; export PATH="$HOME/.local/bin:$PATH"'


def _mount_text(spec: TpuVmSpec) -> str:
  """Mounts the bucket unless mounted (mounts do not survive a restart)."""
  mp = shlex.quote(spec.mount_point)
  return (f"mountpoint -q {mp} || gcsfuse --implicit-dirs "
          f"{shlex.quote(spec.mount_bucket)} {mp}")


def _gcsfuse_install_steps(spec: TpuVmSpec) -> List[str]:
  mp = shlex.quote(spec.mount_point)
  return [
      "if ! command -v gcsfuse > /dev/null; then "
      "echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] "
      "https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -cs) "
      "main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list; "
      "curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | "
      "sudo tee /usr/share/keyrings/cloud.google.asc > /dev/null; "
      "sudo apt-get update -q; sudo apt-get install -y -q gcsfuse; fi",
      f"sudo mkdir -p {mp}", f"sudo chown \"$USER\" {mp}",
      _mount_text(spec)]


def setup_commands(spec: TpuVmSpec) -> List[List[str]]:
  """Install JAX for TPU and this repo (editable) on every worker."""
  dst = remote_path(spec.remote_dir)
  py = spec.python_text
  steps = [_remote_prelude()]
  if spec.venv:
    venv = remote_path(spec.venv)
    # uv brings its own CPython build, so no apt/PPA step is needed.
    steps += [
        "command -v uv > /dev/null || "
        "curl -LsSf https://astral.sh/uv/install.sh | sh",
        f"[ -x {py} ] || uv venv --python "
        f"{shlex.quote(spec.python_version)} {venv}"]
    pip = f"uv pip install --python {py}"
  else:
    pip = f"{py} -m pip install"
  steps.append(" ".join([pip, "-U", shlex.quote(spec.jax_spec)] +
                        [shlex.quote(r) for r in spec.extra_pip]))
  if spec.mount_bucket:
    steps += _gcsfuse_install_steps(spec)
  commands = []
  if spec.repo_url:
    url = shlex.quote(spec.repo_url)
    steps.append(f"if [ -d {dst}/.git ]; then git -C {dst} fetch --all "
                 f"--tags; else git clone {url} {dst}; fi")
    if spec.repo_ref:
      steps.append(f"git -C {dst} checkout {shlex.quote(spec.repo_ref)}")
    else:
      steps.append(f"git -C {dst} pull --ff-only")
  else:
    commands.append(["tar", "czf", spec.tarball, "--exclude=.git",
                     "--exclude=__pycache__", "-C", spec.local_repo, "."])
    remote_tar = os.path.basename(spec.tarball)
    commands.append(scp_command(spec, spec.tarball, remote_tar))
    steps += [f"rm -rf {dst}", f"mkdir -p {dst}",
              f"tar xzf {remote_path(remote_tar)} -C {dst}"]
  steps.append(f"{pip} -e {dst}")
  commands.append(ssh_command(spec, "; ".join(steps)))
  return commands


def main_args(config: str, workdir: str, extra: Sequence[str] = ()
              ) -> List[str]:
  """Arguments of ``python -m sonify_jax.main`` (no quoting)."""
  if not config:
    raise ValueError("--config is required (e.g. configs/demo_simclr.py)")
  if not workdir:
    raise ValueError("--workdir is required (gs://... on Cloud TPU)")
  return [f"--config={config}", f"--workdir={workdir}"] + list(extra)


def _background(spec: TpuVmSpec, command: str) -> str:
  """Remote shell text that starts ``command`` detached from ssh.

  nohup + redirected stdin/stdout let the ssh session end while training
  goes on; setsid makes the job its own process group, whose id the pid file
  keeps, so ``stop`` ends it with all its children.
  """
  env = " ".join(shlex.quote(e) for e in ("PYTHONUNBUFFERED=1",) +
                 tuple(spec.env))
  log = remote_path(spec.log_file)
  pid = remote_path(PID_FILE)
  mount = f"{_mount_text(spec)}; " if spec.mount_bucket else ""
  return (f"{_remote_prelude()}; {mount}cd {remote_path(spec.remote_dir)}; "
          f"nohup setsid env {env} {command} > {log} 2>&1 < /dev/null & "
          f"echo $! > {pid}; echo started pid $(cat {pid}) on $(hostname)")


def python_module_text(spec: TpuVmSpec, module: str,
                       args: Sequence[str] = ()) -> str:
  """Shell text ``<python> -m module args...`` for the workers."""
  return " ".join([spec.python_text, "-m", shlex.quote(module)] +
                  [shlex.quote(a) for a in args])


def run_remote_command(spec: TpuVmSpec, config: str, workdir: str,
                       extra: Sequence[str] = ()) -> str:
  """Remote shell text that starts training on one worker (all run it)."""
  return _background(spec, python_module_text(
      spec, "sonify_jax.main", main_args(config, workdir, extra)))


def analyze_remote_command(spec: TpuVmSpec, study: str, workdir: str,
                           extra: Sequence[str] = ()) -> str:
  """Remote shell text that starts a study (``sonify_jax.analysis.run``) on
  one worker (all run it)."""
  if not study:
    raise ValueError("--study is required for 'analyze' (e.g. atlas)")
  if not workdir:
    raise ValueError("--workdir is required (gs://... on Cloud TPU)")
  return _background(spec, python_module_text(
      spec, "sonify_jax.analysis.run",
      [f"--study={study}", f"--workdir={workdir}"] + list(extra)))


def analyze_command(spec: TpuVmSpec, study: str, workdir: str,
                    extra: Sequence[str] = ()) -> List[str]:
  remote = analyze_remote_command(spec, study, workdir, extra)
  check_workdir(spec, workdir)
  return ssh_command(spec, remote)


def num_hosts(accelerator_type: str) -> int:
  """Hosts of a slice: 8 TensorCores per host for v2/v3/v4 ('v3-32': 4);
  other generations count 1 (unknown)."""
  family, _, size = accelerator_type.rpartition("-")
  if family in ("v2", "v3", "v4") and size.isdigit():
    return max(1, int(size) // 8)
  return 1


def check_workdir(spec: TpuVmSpec, workdir: str) -> None:
  """A multi-host slice needs a workdir every host sees: GCS (gs://... or
  the gcsfuse mount).

  Raises:
    ValueError: for a host-local workdir on a multi-host slice.
  """
  if num_hosts(spec.accelerator_type) == 1 or workdir.startswith("gs://"):
    return
  mount = spec.mount_point.rstrip("/") + "/"
  if spec.mount_bucket and workdir.startswith(mount):
    return
  raise ValueError(
      f"{spec.accelerator_type} has {num_hosts(spec.accelerator_type)} "
      f"hosts: --workdir must be on GCS (gs://... or under the "
      f"--mount_bucket mount point) so that all hosts write one checkpoint "
      f"and a restart finds it; got {workdir!r}")


def run_command(spec: TpuVmSpec, config: str, workdir: str,
                extra: Sequence[str] = ()) -> List[str]:
  remote = run_remote_command(spec, config, workdir, extra)
  check_workdir(spec, workdir)
  return ssh_command(spec, remote)


def check_command(spec: TpuVmSpec) -> List[str]:
  """Multi-host smoke test in the foreground on all workers."""
  cmd = python_module_text(spec, "launch.multihost_check")
  return ssh_command(spec, f"{_remote_prelude()}; "
                     f"cd {remote_path(spec.remote_dir)}; {cmd}")


def logs_command(spec: TpuVmSpec, worker: str = "0", lines: int = 100,
                 follow: bool = False) -> List[str]:
  tail = "tail -F" if follow else "tail"
  return ssh_command(spec, f"{tail} -n {int(lines)} "
                     f"{remote_path(spec.log_file)}", worker=worker)


def stop_command(spec: TpuVmSpec) -> List[str]:
  pid = remote_path(PID_FILE)
  return ssh_command(spec, f"if [ -f {pid} ]; then kill -- -$(cat {pid}) "
                     f"|| true; rm -f {pid}; fi")


def commands_for(action: str, spec: TpuVmSpec, config: str = "",
                 workdir: str = "", extra: Sequence[str] = (),
                 worker: str = "0", lines: int = 100,
                 follow: bool = False, study: str = "") -> List[List[str]]:
  """The commands an action runs, in order."""
  if action not in ACTIONS:
    raise ValueError(f"unknown action {action!r}; choose from {ACTIONS}")
  if action == "analyze":
    return [analyze_command(spec, study, workdir, extra)]
  if action in ("run", "up"):
    run = run_command(spec, config, workdir, extra)  # validates early
  if action == "create":
    return [create_command(spec)]
  if action == "setup":
    return setup_commands(spec)
  if action == "run":
    return [run]
  if action == "up":
    return [create_command(spec)] + setup_commands(spec) + [run]
  if action == "check":
    return [check_command(spec)]
  if action == "logs":
    return [logs_command(spec, worker, lines, follow)]
  if action == "stop":
    return [stop_command(spec)]
  if action == "status":
    return [describe_command(spec)]
  return [delete_command(spec)]


def format_command(argv: Sequence[str]) -> str:
  """The exact shell line for ``argv``."""
  return shlex.join(list(argv))


def execute(commands: Sequence[Sequence[str]], dry_run: bool,
            out=None) -> None:
  """Prints (dry run) or runs the commands in order, stopping at a failure.

  Raises:
    subprocess.CalledProcessError: when a command fails.
  """
  out = out or sys.stdout
  for i, argv in enumerate(commands):
    line = format_command(argv)
    if dry_run:
      print(line, file=out, flush=True)
      continue
    logging.info("[%d/%d] %s", i + 1, len(commands), line)
    subprocess.run(list(argv), check=True)


_NAME = Text(r"[a-z]([-a-z0-9]*[a-z0-9])?", "a GCP resource name "
             "(lowercase letters, digits and '-')")
_SOME_TEXT = Text(r"\S+", "a non-empty word")
_ANY_TEXT = Text(r".+", "not empty")
# The launcher's flags (sweep.py's TPU targets use them too).
TPU_FLAG_DOMAINS = {
    "name": OrNone(_NAME), "zone": OrNone(Text(
        r"[a-z0-9-]+", "a GCP zone such as europe-west4-a")),
    "project": OrNone(_SOME_TEXT),
    "accelerator_type": Text(r"v\d+[a-z]*-\d+",
                             "a TPU type such as v3-8 or v4-32"),
    "version": OrNone(_SOME_TEXT), "spot": flag_check.ANY,
    "dry_run": flag_check.ANY,
    "preemptible": flag_check.ANY, "repo_url": OrNone(_SOME_TEXT),
    "repo_ref": flag_check.ANY, "local_repo": Path(empty_ok=False),
    "tarball": Text(r".+\.tar\.gz", "a .tar.gz path"),
    "remote_dir": _SOME_TEXT, "jax_spec": _SOME_TEXT,
    "venv": flag_check.ANY,
    "python_version": Text(r"3\.\d+", "a Python version such as 3.11"),
    "python": _SOME_TEXT, "extra_pip": flag_check.ANY,
    "mount_bucket": OrNone(Text(r"[a-z0-9][-_.a-z0-9]{1,221}[a-z0-9]",
                                "a bucket name (no gs://)")),
    "mount_point": Text(r"/.*", "an absolute path"),
    "log_file": _SOME_TEXT,
    "env": TextList(r"[A-Za-z_][A-Za-z0-9_]*=.*", "KEY=VALUE items")}
# This command's own flags.
FLAG_DOMAINS = {
    "config": OrNone(_ANY_TEXT), "workdir": OrNone(_ANY_TEXT),
    "study": OrNone(Text(r"[a-z_]+", "a study name such as atlas")),
    "extra": flag_check.ANY,
    "worker": Text(r"\d+|all", "a worker number (0, 1, ...) or 'all'"),
    "lines": Int(1), "follow": flag_check.ANY}


def define_flags():
  """The launcher's flags (sweep.py defines the same ones for TPU targets);
  a second call (an entry point run again in one process) defines nothing."""
  if "accelerator_type" in flags.FLAGS:
    return
  flags.DEFINE_string("name", None, "TPU VM name.")
  flags.DEFINE_string("zone", None, "GCP zone, e.g. europe-west4-a.")
  flags.DEFINE_string("project", None, "GCP project (default: gcloud's).")
  flags.DEFINE_string("accelerator_type", "v3-8",
                      "TPU type: v3-8 (one host) or a slice like v3-32.")
  flags.DEFINE_string("version", None, "TPU VM runtime version (default: "
                      "tpu-ubuntu2204-base for v2-v4).")
  flags.DEFINE_bool("spot", False, "Create a Spot TPU VM.")
  flags.DEFINE_bool("preemptible", False, "Create a preemptible TPU VM.")
  flags.DEFINE_string("repo_url", None, "git URL of this repo for the "
                      "workers; default: copy a tarball of --local_repo.")
  flags.DEFINE_string("repo_ref", "", "git branch/tag/commit to check out.")
  flags.DEFINE_string("local_repo", os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), "Local checkout to copy.")
  flags.DEFINE_string("tarball", "/tmp/sonify_jax_src.tar.gz",
                      "Local path for the source tarball.")
  flags.DEFINE_string("remote_dir", "sonify_jax",
                      "Repo location on the workers (relative: to $HOME).")
  flags.DEFINE_string("jax_spec", "jax[tpu]", "pip requirement for JAX.")
  flags.DEFINE_string("venv", "sonify_venv", "Virtualenv on the workers "
                      "(relative: to $HOME), created by 'setup' with uv; '' "
                      "uses --python directly.")
  flags.DEFINE_string("python_version", "3.11", "Python of the venv.")
  flags.DEFINE_string("python", "python3",
                      "Python on the workers when --venv=''.")
  flags.DEFINE_list("extra_pip", ["gcsfs"], "More pip requirements for the "
                    "workers (gcsfs: gs:// for TFDS/epath).")
  flags.DEFINE_string("mount_bucket", None, "GCS bucket to mount with "
                      "gcsfuse on every worker.")
  flags.DEFINE_string("mount_point", "/mnt/gcs", "Mount point of "
                      "--mount_bucket.")
  flags.DEFINE_string("log_file", "sonify_jax_train.log",
                      "Training log on the workers (relative: to $HOME).")
  flags.DEFINE_multi_string("env", [], "KEY=VALUE for the training process "
                            "(repeatable), e.g. TFDS_DATA_DIR=gs://b/tfds.")
  flags.DEFINE_bool("dry_run", False, "Print the commands, run nothing.")
  flag_check.register(TPU_FLAG_DOMAINS)


def spec_from_flags() -> TpuVmSpec:
  f = flags.FLAGS
  return TpuVmSpec(
      name=f.name, zone=f.zone, project=f.project,
      accelerator_type=f.accelerator_type, version=f.version, spot=f.spot,
      preemptible=f.preemptible, repo_url=f.repo_url, repo_ref=f.repo_ref,
      local_repo=f.local_repo, tarball=f.tarball, remote_dir=f.remote_dir,
      jax_spec=f.jax_spec, venv=f.venv, python_version=f.python_version,
      python=f.python, extra_pip=tuple(f.extra_pip),
      mount_bucket=f.mount_bucket, mount_point=f.mount_point,
      log_file=f.log_file,
      env=tuple(f.env))


def main(argv):
  if len(argv) != 2 or argv[1] not in ACTIONS:
    raise app.UsageError(f"usage: python -m launch.tpu_vm ACTION [flags]; "
                         f"ACTION is one of {', '.join(ACTIONS)}")
  f = flags.FLAGS
  try:
    spec = spec_from_flags()
    commands = commands_for(argv[1], spec, f.config, f.workdir, f.extra,
                            f.worker, f.lines, f.follow, f.study)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  try:
    execute(commands, f.dry_run)
  except subprocess.CalledProcessError as e:
    logging.error("command failed (exit %d): %s", e.returncode,
                  format_command(e.cmd))
    sys.exit(e.returncode or 1)


if __name__ == "__main__":
  define_flags()
  flags.DEFINE_string("config", None, "Config for sonify_jax.main "
                      "(path relative to the repo, with optional :arg).")
  flags.DEFINE_string("workdir", None, "Workdir for sonify_jax.main "
                      "(gs://bucket/... so all hosts and restarts share it).")
  flags.DEFINE_multi_string("extra", [], "Extra argument for "
                            "sonify_jax.main, repeatable, e.g. "
                            "--extra=--config.batch_size=512.")
  flags.DEFINE_string("study", None, "Study for 'analyze' (atlas, sanity, "
                      "...: python -m sonify_jax.analysis.run --study).")
  flags.DEFINE_string("worker", "0", "Worker for 'logs' (0, 1, ... or all).")
  flags.DEFINE_integer("lines", 100, "Lines of log for 'logs'.")
  flags.DEFINE_bool("follow", False, "Stream the log ('logs').")
  flag_check.register(FLAG_DOMAINS)
  cli.run(main)
