r"""xmanager-style sweeps: one ``sonify_jax.main`` job per setting.

A sweep is a list of settings; each setting maps keys to values:
  * a plain key (``tau``, ``aug``, ``model``) goes into the config file's
    argument, ``--config=configs/X.py:tau=0.1,aug=no_mix`` (merged over the
    argument given with --config);
  * a ``config.``-prefixed key (``config.batch_size``) becomes a command-line
    override, ``--config.batch_size=128``.

The settings come from --sweep (repeatable axes ``key=v1,v2,...``, or one
string with axes joined by `` x ``; the jobs are the cartesian product), or,
without --sweep, from the config file's optional ``get_sweep(arg=None)``,
which returns either a dict ``{key: [values]}`` (product) or a list of
settings dicts.

Each job runs in ``<workdir>/<name>`` with ``name`` made of the setting
(``tau=0.1,aug=no_mix``). ``--target=local`` runs the jobs one after another
here (a manifest ``<workdir>/sweep.json`` records their status; --skip_done
skips finished ones after an interruption); ``--target=tpu_vm`` starts them
on Cloud TPU VMs through launch.tpu_vm, either one VM per job
(``--tpu_mode=per_job``: VM ``<name>-<i>`` is created, set up and started)
or one after another on one existing VM (``--tpu_mode=shared``).

  python -m launch.sweep --config=configs/demo_simclr.py \
      --workdir=/tmp/sweep --sweep='tau=0.1,0.2,0.3' --sweep='aug=all,no_mix' \
      --dry_run

``--seeds=N`` runs each setting N times with ``config.seed=0..N-1``, in
``<workdir>/<name>/seed<i>`` (``<workdir>/seed<i>`` without settings): the
runs ``python -m sonify_jax.analysis.aggregate`` combines into intervals.
"""
import ast
import dataclasses
import datetime
import inspect
import itertools
import json
import os
import posixpath
import re
import shlex
import subprocess
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging

from launch import tpu_vm
from sonify_jax import atomic_io
from sonify_jax import cli
from sonify_jax import config_files
from sonify_jax import flag_check
from sonify_jax.domains import Int, OrNone, Text

OVERRIDE_PREFIX = "config."
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


@dataclasses.dataclass(frozen=True)
class Job:
  """One run of ``sonify_jax.main``.

  Attributes:
    name: directory name, from the setting.
    config: ``--config`` value (path[:arg]).
    workdir: ``--workdir`` value.
    overrides: ``--config.KEY=VALUE`` arguments, then the sweep's extras.
    setting: the setting this job came from.
  """
  name: str
  config: str
  workdir: str
  overrides: Tuple[str, ...]
  setting: Tuple[Tuple[str, str], ...]

  def main_args(self) -> List[str]:
    return tpu_vm.main_args(self.config, self.workdir, self.overrides)


def format_value(value: Any) -> str:
  """Command-line text of a sweep value (what config_flags parses)."""
  if isinstance(value, bool):
    return "True" if value else "False"
  if isinstance(value, (list, tuple)):
    return "(" + ",".join(format_value(v) for v in value) + \
        ("," if len(value) == 1 else "") + ")"
  return str(value)


def _check_key(key: str) -> None:
  if not _KEY_RE.match(key) or key.endswith(".") or key == "config":
    raise ValueError(f"bad sweep key {key!r}: use a config arg name (tau) or "
                     "config.FIELD (config.batch_size)")


def parse_sweep_axes(specs: Sequence[str]) -> List[Tuple[str, List[str]]]:
  """'key=v1,v2' axes (also several joined by ' x ') -> [(key, values)].

  Raises:
    ValueError: on a malformed axis, an empty value or a repeated key.
  """
  axes = []
  for spec in specs:
    for part in re.split(r"\s+x\s+", spec.strip()):
      part = part.strip().strip("'\"")
      if not part:
        continue
      if "=" not in part:
        raise ValueError(f"sweep axis {part!r} is not key=v1,v2,...")
      key, values = (s.strip() for s in part.split("=", 1))
      _check_key(key)
      vals = [v.strip() for v in values.split(",")]
      if not values or any(not v for v in vals):
        raise ValueError(f"sweep axis {part!r} has an empty value")
      if key in [k for k, _ in axes]:
        raise ValueError(f"sweep key {key!r} given twice")
      axes.append((key, vals))
  return axes


def product(axes: Sequence[Tuple[str, Sequence[Any]]]
            ) -> List[Dict[str, Any]]:
  """Cartesian product of axes, first axis slowest."""
  if not axes:
    return []
  keys = [k for k, _ in axes]
  return [dict(zip(keys, combo))
          for combo in itertools.product(*[v for _, v in axes])]


def split_config(config: str) -> Tuple[str, Optional[str]]:
  """'path.py:arg' -> ('path.py', 'arg'); the arg may be absent."""
  path, sep, arg = config.partition(":")
  if not path.endswith(".py"):
    raise ValueError(f"--config must be a .py file path[:arg], got {config!r}")
  return path, (arg if sep else None)


def load_config_module(path: str):
  """Imports a config file by path (``config_files.load_config_module``:
  a missing file, a syntax error, an exception on import or no
  ``get_config`` is a one-line UserError; FileNotFoundError for no file)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file not found: {path}")
  return config_files.load_config_module(path)


def _call_with_optional_arg(fn, arg):
  params = inspect.signature(fn).parameters
  return fn(arg) if params else fn()


def settings_from_config(path: str, arg: Optional[str]
                         ) -> Optional[List[Dict[str, Any]]]:
  """The config file's ``get_sweep(arg)`` settings, or None if it has none.

  Raises:
    ValueError: if get_sweep returns something other than a dict of lists
      or a list of dicts.
  """
  module = load_config_module(path)
  get_sweep = getattr(module, "get_sweep", None)
  if get_sweep is None:
    return None
  sweep = _call_with_optional_arg(get_sweep, arg)
  if isinstance(sweep, Mapping):
    axes = []
    for key, values in sweep.items():
      if isinstance(values, (str, bytes)) or not isinstance(
          values, Sequence):
        raise ValueError(f"get_sweep()[{key!r}] must be a list of values")
      axes.append((key, list(values)))
    settings = product(axes)
  elif isinstance(sweep, Sequence) and all(
      isinstance(s, Mapping) for s in sweep):
    settings = [dict(s) for s in sweep]
  else:
    raise ValueError("get_sweep() must return {key: [values]} or a list of "
                     f"{{key: value}} dicts, got {type(sweep).__name__}")
  for s in settings:
    for key in s:
      _check_key(key)
  return settings


def merge_config_arg(base_arg: Optional[str],
                     updates: Sequence[Tuple[str, str]]) -> Optional[str]:
  """Merges 'k=v' updates into a 'k1=v1,k2=v2' config arg (in place of
  equal keys, else appended).

  Raises:
    ValueError: if a value contains ',' (the configs split on it).
  """
  items: List[List[str]] = []
  if base_arg:
    for item in base_arg.split(","):
      if not item.strip():
        continue
      key, sep, value = item.partition("=")
      items.append([key.strip(), value.strip()] if sep else [item.strip(),
                                                               None])
  for key, value in updates:
    if "," in value:
      raise ValueError(f"config arg value {key}={value!r} may not contain ','")
    for item in items:
      if item[0] == key:
        item[1] = value
        break
    else:
      items.append([key, value])
  if not items:
    return base_arg
  return ",".join(k if v is None else f"{k}={v}" for k, v in items)


def job_name(setting: Sequence[Tuple[str, str]]) -> str:
  """'tau=0.1,aug=no_mix': the setting, minus 'config.', path-safe."""
  text = ",".join(f"{k[len(OVERRIDE_PREFIX):] if k.startswith(OVERRIDE_PREFIX) else k}={v}"
                  for k, v in setting)
  return _NAME_UNSAFE.sub("_", text) or "default"


def join_workdir(base: str, name: str) -> str:
  if "://" in base:  # gs://bucket/dir: always '/'.
    return posixpath.join(base, name)
  return os.path.join(base, name)


def make_jobs(config: str, workdir: str,
              settings: Optional[Sequence[Mapping[str, Any]]],
              extra: Sequence[str] = (), seeds: int = 0) -> List[Job]:
  """One job per setting (a single job in ``workdir`` when there are none),
  times ``seeds``: with ``seeds=N`` each becomes N jobs with
  ``--config.seed=0..N-1`` in ``<its workdir>/seed0..seedN-1``.

  Raises:
    ValueError: on duplicate job names or bad keys/values.
  """
  if seeds < 0:
    raise ValueError(f"--seeds must be >= 0, got {seeds}")
  jobs = _setting_jobs(config, workdir, settings, extra)
  if not seeds:
    return jobs
  return [Job(f"seed{i}" if job.name == "default" and not job.setting
              else f"{job.name}/seed{i}", job.config,
              join_workdir(job.workdir, f"seed{i}"),
              (f"--{OVERRIDE_PREFIX}seed={i}",) + job.overrides,
              job.setting + ((f"{OVERRIDE_PREFIX}seed", str(i)),))
          for job in jobs for i in range(seeds)]


def _setting_jobs(config: str, workdir: str,
                  settings: Optional[Sequence[Mapping[str, Any]]],
                  extra: Sequence[str]) -> List[Job]:
  if not workdir:
    raise ValueError("--workdir is required")
  path, base_arg = split_config(config)
  if not settings:
    return [Job("default", config, workdir, tuple(extra), ())]
  jobs, seen = [], set()
  for setting in settings:
    pairs = tuple((str(k), format_value(v)) for k, v in setting.items())
    for k, _ in pairs:
      _check_key(k)
    arg_updates = [(k, v) for k, v in pairs
                   if not k.startswith(OVERRIDE_PREFIX)]
    overrides = tuple(f"--{k}={v}" for k, v in pairs
                      if k.startswith(OVERRIDE_PREFIX))
    arg = merge_config_arg(base_arg, arg_updates)
    job_config = path if arg is None else f"{path}:{arg}"
    name = job_name(pairs)
    if name in seen:
      raise ValueError(f"two settings give the same job name {name!r}")
    seen.add(name)
    jobs.append(Job(name, job_config, join_workdir(workdir, name),
                    overrides + tuple(extra), pairs))
  return jobs


def _override_value(old: Any, text: str, where: str) -> Any:
  """``--config.FIELD=text`` as the field's type (as config_flags reads it)."""
  try:
    if isinstance(old, bool):
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError("not a bool")
      return text.lower() in ("true", "1")
    if isinstance(old, int):
      return int(text)
    if isinstance(old, float):
      return float(text)
    if isinstance(old, (tuple, list)):
      value = ast.literal_eval(text)
      return tuple(value) if isinstance(value, (tuple, list)) else (value,)
  except (ValueError, SyntaxError) as error:
    kind = {bool: "a bool", int: "an integer", float: "a number"}.get(
        type(old), "a tuple")
    raise ValueError(f"{where}: {text!r} is not {kind} ({error})") from None
  return text


def validate_jobs(jobs: Sequence[Job]) -> None:
  """Builds every job's config here, with its overrides, and checks every
  field (``sonify_jax.config_check``): typos and values outside a field's
  domain are caught before anything is launched.

  Raises:
    ValueError: naming the job whose config arg or override is rejected.
  """
  from sonify_jax import config_check  # pylint: disable=g-import-not-at-top
  for job in jobs:
    try:
      cfg = config_files.load_config(job.config)
    except ValueError as e:
      raise ValueError(f"job {job.name}: {e}") from None
    for item in job.overrides:
      if not item.startswith("--" + OVERRIDE_PREFIX):
        continue
      field, _, text = item[len("--" + OVERRIDE_PREFIX):].partition("=")
      *parents, leaf = field.split(".")
      node = cfg
      try:
        for part in parents:
          node = node[part]
        old = node[leaf]
      except (KeyError, TypeError, AttributeError):
        raise ValueError(f"job {job.name}: config has no field "
                         f"{field!r}") from None
      value = _override_value(old, text, f"job {job.name}: {item}")
      with cfg.unlocked():
        node[leaf] = value
      if field in config_check.FIELDS:
        try:
          config_check.check_field(field, value)
        except ValueError as e:
          raise ValueError(f"job {job.name}: {e}") from None
    if config_check.is_complete(cfg):
      try:
        # The paths are the jobs' machines' (init_from may not exist here).
        config_check.validate(cfg, check_paths=False)
      except ValueError as e:
        raise ValueError(f"job {job.name}: {e}") from None


def local_command(job: Job, python: str) -> List[str]:
  return [python, "-m", "sonify_jax.main"] + job.main_args()


def shared_vm_command(spec: tpu_vm.TpuVmSpec, jobs: Sequence[Job]
                      ) -> List[str]:
  """One ssh that runs all jobs in sequence, detached, on every worker.

  ';' between jobs: a failed job does not stop the ones after it.
  """
  for job in jobs:
    tpu_vm.check_workdir(spec, job.workdir)
  script = "; ".join(tpu_vm.python_module_text(spec, "sonify_jax.main",
                                               job.main_args())
                     for job in jobs)
  return tpu_vm.ssh_command(
      spec, tpu_vm._background(spec, "sh -c " + shlex.quote(script)))  # pylint: disable=protected-access


def per_job_specs(spec: tpu_vm.TpuVmSpec, count: int
                  ) -> List[tpu_vm.TpuVmSpec]:
  """VM ``<name>-<i>`` for job i."""
  return [dataclasses.replace(spec, name=f"{spec.name}-{i}")
          for i in range(count)]


def tpu_commands(spec: tpu_vm.TpuVmSpec, jobs: Sequence[Job], mode: str,
                 create: bool = True) -> List[List[str]]:
  """All commands of a TPU sweep, in order."""
  if mode == "shared":
    return [shared_vm_command(spec, jobs)]
  if mode != "per_job":
    raise ValueError(f"--tpu_mode must be per_job or shared, got {mode!r}")
  commands = []
  for job, job_spec in zip(jobs, per_job_specs(spec, len(jobs))):
    if create:
      commands.append(tpu_vm.create_command(job_spec))
      commands += tpu_vm.setup_commands(job_spec)
    commands.append(tpu_vm.run_command(job_spec, job.config, job.workdir,
                                       job.overrides))
  return commands


# ---------------------------------------------------------------- manifest


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")


def manifest_path(workdir: str) -> Optional[str]:
  """Local sweeps keep ``<workdir>/sweep.json``; remote workdirs none."""
  return None if "://" in workdir else os.path.join(workdir, "sweep.json")


def read_manifest(path: Optional[str]) -> Dict[str, Any]:
  if not path or not os.path.exists(path):
    return {"jobs": {}}
  with open(path) as f:
    return json.load(f)


def write_manifest(path: Optional[str], manifest: Dict[str, Any]) -> None:
  """Atomic write, so an interrupted sweep never leaves a torn file."""
  if not path:
    return
  atomic_io.write_json(path, manifest)


def run_local(jobs: Sequence[Job], python: str, workdir: str,
              skip_done: bool = False, keep_going: bool = False,
              runner=subprocess.run) -> Dict[str, str]:
  """Runs jobs in sequence here; returns {name: 'done' | 'failed' | ...}.

  The manifest is updated before and after every job.
  """
  path = manifest_path(workdir)
  manifest = read_manifest(path)
  statuses = {}
  for i, job in enumerate(jobs):
    entry = manifest["jobs"].get(job.name, {})
    if skip_done and entry.get("status") == "done":
      logging.info("[%d/%d] %s: done before, skipped", i + 1, len(jobs),
                   job.name)
      statuses[job.name] = "skipped"
      continue
    argv = local_command(job, python)
    print(f"[{i + 1}/{len(jobs)}] {job.name}: {tpu_vm.format_command(argv)}",
          flush=True)
    manifest["jobs"][job.name] = {"status": "running", "argv": argv,
                                  "workdir": job.workdir, "started": _now()}
    write_manifest(path, manifest)
    rc = runner(argv).returncode
    status = "done" if rc == 0 else "failed"
    manifest["jobs"][job.name].update(status=status, returncode=rc,
                                      finished=_now())
    write_manifest(path, manifest)
    statuses[job.name] = status
    if rc and not keep_going:
      raise RuntimeError(f"job {job.name} failed with exit code {rc}; "
                         "rerun with --skip_done to continue after fixing")
  return statuses


# -------------------------------------------------------------------- main


def define_flags():
  tpu_vm.define_flags()
  flags.DEFINE_string("config", None, "Config file (path[:arg]).")
  flags.DEFINE_string("workdir", None, "Base workdir; jobs use <workdir>/"
                      "<name>.")
  flags.DEFINE_multi_string("sweep", [], "Sweep axis key=v1,v2,... "
                            "(repeatable; or axes joined by ' x ').")
  flags.DEFINE_multi_string("extra", [], "Extra argument for every job.")
  flags.DEFINE_integer("seeds", 0, "Run every setting with config.seed="
                       "0..N-1 in <its workdir>/seed<i> (0: the config's "
                       "seed only).")
  flags.DEFINE_enum("target", "local", ["local", "tpu_vm"],
                    "Where the jobs run.")
  flags.DEFINE_enum("tpu_mode", "per_job", ["per_job", "shared"],
                    "tpu_vm: a new VM per job, or all jobs in sequence on "
                    "--name.")
  flags.DEFINE_bool("create_vms", True, "per_job: create and set up the VMs "
                    "(else run on existing <name>-<i>).")
  flags.DEFINE_string("local_python", sys.executable,
                      "Python for local jobs.")
  flags.DEFINE_bool("validate", True, "Build every job's config first.")
  flags.DEFINE_bool("skip_done", False, "local: skip jobs the manifest "
                    "marks done.")
  flags.DEFINE_bool("keep_going", False, "local: go on after a failed job.")
  flag_check.register(FLAG_DOMAINS)


FLAG_DOMAINS = {
    "config": OrNone(Text(r"[^:]+\.py(:.*)?", "a config file path[:arg]")),
    "workdir": OrNone(Text(r".+", "a folder")), "sweep": flag_check.ANY,
    "extra": flag_check.ANY, "seeds": Int(0, meaning="0: the config's seed"),
    "target": flag_check.ANY, "tpu_mode": flag_check.ANY,
    "create_vms": flag_check.ANY, "local_python": Text(r".+", "a Python"),
    "validate": flag_check.ANY, "skip_done": flag_check.ANY,
    "keep_going": flag_check.ANY}


def build_commands(f) -> Tuple[List[Job], List[List[str]]]:
  """Jobs and their commands from parsed flags ``f``."""
  if not f.config:
    raise ValueError("--config is required")
  path, arg = split_config(f.config)
  if f.sweep:
    settings = product(parse_sweep_axes(f.sweep))
  else:
    settings = settings_from_config(path, arg)
  jobs = make_jobs(f.config, f.workdir, settings, f.extra, f.seeds)
  if f.validate:
    validate_jobs(jobs)
  if f.target == "local":
    return jobs, [local_command(job, f.local_python) for job in jobs]
  spec = tpu_vm.spec_from_flags()
  return jobs, tpu_commands(spec, jobs, f.tpu_mode, f.create_vms)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  try:
    jobs, commands = build_commands(f)
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from e
  logging.info("%d job(s): %s", len(jobs), ", ".join(j.name for j in jobs))
  if f.dry_run:
    tpu_vm.execute(commands, dry_run=True)
    return
  if f.target == "local":
    try:
      run_local(jobs, f.local_python, f.workdir, f.skip_done, f.keep_going)
    except RuntimeError as e:
      logging.error("%s", e)
      sys.exit(1)
    return
  try:
    tpu_vm.execute(commands, dry_run=False)
  except subprocess.CalledProcessError as e:
    logging.error("command failed (exit %d): %s", e.returncode,
                  tpu_vm.format_command(e.cmd))
    sys.exit(e.returncode or 1)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
