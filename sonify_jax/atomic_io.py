"""Atomic, strict writes: a failed or interrupted command leaves the old file
or nothing, never a half-written one, and JSON is always valid strict JSON.

Python's ``json`` writes NaN/Infinity, which strict parsers reject; every JSON
we write goes through ``write_json``, which writes ``null`` for non-finite
numbers instead. ``atomic_path`` is the one temp-name-then-rename helper
for files; ``atomic_dir`` does the same for a folder of outputs built whole
(a sonify run): the new folder is complete before it replaces the old one.

A non-local ``path`` (``gs://``, ``s3://``, through ``etils.epath``) has no
rename that is atomic (GCS "rename" is copy + delete), so ``atomic_path``
gives a local temp file and uploads it whole when the block succeeds: an
object store makes an uploaded object visible only once complete, so readers
see the old object or the new one, never part of one, as with a rename.
``atomic_dir`` on a non-local ``path`` builds the folder locally and, when
the block succeeds, removes the old folder and uploads the new one file by
file (``mirror``): each file is whole, but for the moments of the upload a
reader can see part of the folder.
"""
import contextlib
import json
import math
import os
import shutil
import tempfile
from typing import Any, Iterator

import numpy as np

from sonify_jax import mirror
from sonify_jax import paths


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


_UMASK = _umask()


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path beside ``path``; renames it onto ``path`` when
  the block succeeds and deletes it when the block raises.

  The temp name keeps ``path``'s extension so writers that pick a format from
  it (matplotlib, soundfile) still do.
  """
  path = os.fspath(path)
  if not paths.is_local(path):
    with _uploaded_on_success(path) as tmp:
      yield tmp
    return
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  base = os.path.basename(path)
  _, ext = os.path.splitext(base)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".tmp_{base}.",
                             suffix=ext)
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 is not what users expect
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


@contextlib.contextmanager
def _uploaded_on_success(url: str) -> Iterator[str]:
  """A local temp file copied whole to the (non-local) ``url`` when the
  block succeeds; removed either way."""
  _, ext = os.path.splitext(url)
  fd, tmp = tempfile.mkstemp(prefix=".tmp_upload.", suffix=ext)
  os.close(fd)
  try:
    yield tmp
    paths.upload(tmp, url)
  finally:
    os.unlink(tmp)


@contextlib.contextmanager
def _uploaded_dir_on_success(url: str) -> Iterator[str]:
  """A local temp folder that replaces the (non-local) folder ``url`` when
  the block succeeds; removed either way."""
  with mirror.staged(url, pull=False) as staged:
    yield staged.local
    target = paths.as_path(url)
    if target.exists():
      target.rmtree()


@contextlib.contextmanager
def atomic_dir(path: str) -> Iterator[str]:
  """Yields a new temporary folder beside ``path``; when the block succeeds
  it replaces ``path`` (an earlier folder there is removed after the swap),
  when it raises the temporary folder is deleted and ``path`` is untouched.

  Raises:
    errors.UserError: ``path``'s parent cannot be written.
  """
  from sonify_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  if not paths.is_local(os.fspath(path)):
    with _uploaded_dir_on_success(os.fspath(path)) as tmp:
      yield tmp
    return
  path = os.path.abspath(os.fspath(path))
  parent, base = os.path.split(path)
  try:
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".tmp_{base}.")
  except OSError as error:
    raise UserError(f"cannot write {path}: {error.strerror or error}"
                    ) from error
  try:
    yield tmp
    os.chmod(tmp, 0o777 & ~_UMASK)
    old = None
    if os.path.isdir(path):
      old = tempfile.mkdtemp(dir=parent, prefix=f".old_{base}.")
      os.replace(path, os.path.join(old, base))
    os.replace(tmp, path)
    if old is not None:
      shutil.rmtree(old, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def write_text(path: str, text: str) -> str:
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
  return path


def to_strict_json(value: Any) -> Any:
  """``value`` with numpy/jax numbers and arrays made plain Python and every
  non-finite float replaced by ``None``."""
  if isinstance(value, dict):
    return {str(k): to_strict_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_strict_json(v) for v in value]
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    value = float(value)
    return value if math.isfinite(value) else None
  if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
    return to_strict_json(np.asarray(value).tolist())
  return value


def dumps(payload: Any, **kwargs) -> str:
  """Strict JSON text (``null`` for NaN/Infinity)."""
  return json.dumps(to_strict_json(payload), allow_nan=False, **kwargs)


def write_json(path: str, payload: Any) -> str:
  """Atomic strict JSON write; returns ``path``."""
  return write_text(path, dumps(payload, indent=1, sort_keys=True) + "\n")
