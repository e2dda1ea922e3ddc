"""Paths that may be local or a cloud URL (``gs://bucket/...``, ``s3://``).

Every workdir, checkpoint and data_dir path goes through ``etils.epath`` (the
path library TFDS and orbax use), so a ``gs://`` URL works wherever a local
path does. Functions here take and return plain strings, so callers keep
passing strings around; ``as_path`` gives the ``epath.Path`` for file work.
"""
import os
import shutil
from typing import Dict

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


def upload(local_file: str, path) -> None:
  """Copies a local file to ``path`` (local or URL) whole, making parents."""
  target = as_path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  with open(local_file, "rb") as src, target.open("wb") as dst:
    shutil.copyfileobj(src, dst)


def download(path, local_file: str) -> None:
  """Copies ``path`` (local or URL) to a local file, making its folder."""
  os.makedirs(os.path.dirname(os.path.abspath(local_file)), exist_ok=True)
  with as_path(path).open("rb") as src, open(local_file, "wb") as dst:
    shutil.copyfileobj(src, dst)


def files_under(root) -> Dict[str, str]:
  """``{relative name: path}`` of every file under the folder ``root``
  (local or URL), in sorted order."""
  files = {}

  def visit(folder: epath.Path, rel: str) -> None:
    # iterdir/is_dir rather than walk (epath's fsspec walk yields roots
    # without their gs:// prefix) or glob('**') (refused on gs://).
    for child in sorted(folder.iterdir()):
      child_rel = f"{rel}/{child.name}" if rel else child.name
      if child.is_dir():
        visit(child, child_rel)
      else:
        files[child_rel] = str(child)
  visit(as_path(root), "")
  return files
