"""Paths that may be local or a cloud URL (``gs://bucket/...``, ``s3://``).

Every workdir, checkpoint and data_dir path goes through ``etils.epath`` (the
path library TFDS and orbax use), so a ``gs://`` URL works wherever a local
path does. Functions here take and return plain strings, so callers keep
passing strings around; ``as_path`` gives the ``epath.Path`` for file work.
"""
import os

from etils import epath


def is_local(path) -> bool:
  """True for a plain filesystem path, False for a ``scheme://`` URL."""
  return "://" not in os.fspath(path)


def as_path(path, *names) -> epath.Path:
  """``path`` (joined with ``names``) as an ``epath.Path``; a local path is
  made absolute."""
  return epath.Path(resolve(path)).joinpath(*names)


def resolve(path) -> str:
  """A local path made absolute; a URL unchanged."""
  path = os.fspath(path)
  return os.path.abspath(path) if is_local(path) else str(epath.Path(path))


def join(path, *names) -> str:
  return str(epath.Path(path).joinpath(*names))


def split(path):
  """``(parent, name)`` of a resolved path (local or URL)."""
  path = as_path(path)
  return str(path.parent), path.name
