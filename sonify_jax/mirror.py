"""A local folder standing in for an output folder that may be a ``gs://`` URL.

Some writers take only a local path: tensorboardX's event files (its own
``gs://`` writer needs ``google-cloud-storage``, outside ``etils.epath``, and
re-uploads the whole file on each flush too), an appended ``metrics.jsonl``
(an object store has no append), and the soundfile/matplotlib outputs of the
analysis studies. They write into ``Mirror.local``; :meth:`Mirror.push` copies
the files that are new or changed since the last push to the destination
through ``etils.epath`` (``paths.upload``: each file whole, so a reader sees
the old object or the new one). For a local destination ``local`` *is* the
destination and pushing does nothing, so local runs are unchanged.
:func:`pulled` is the reading side: a local copy of a remote folder for
readers that take local paths (the gallery's topk folders).

Hand-written because neither epath nor fsspec keeps a local folder in step
with a remote one by changes (fsspec's ``put`` copies everything each time).
"""
import contextlib
import os
import shutil
import tempfile
from typing import Iterable, Iterator, Optional

from sonify_jax import paths


def _signature(path: str):
  stat = os.stat(path)
  return stat.st_size, stat.st_mtime_ns


class Mirror:
  """``local``: where to write; ``dest``: where the files end up."""

  def __init__(self, dest: str):
    self.dest = paths.resolve(dest)
    self.remote = not paths.is_local(self.dest)
    # A local destination is left for the writers to create.
    self.local = (tempfile.mkdtemp(prefix="sonify_mirror.") if self.remote
                  else self.dest)
    self._pushed = {}  # relative name -> signature of the copy on dest

  def pull(self, names: Optional[Iterable[str]] = None) -> None:
    """Copies ``names`` (relative; default: every file) from ``dest`` into
    ``local``, so that appends and resumed work continue what is there."""
    if not self.remote:
      return
    root = paths.as_path(self.dest)
    if names is None:
      names = paths.files_under(root) if root.is_dir() else []
    for name in names:
      if not (root / name).is_file():
        continue
      local = os.path.join(self.local, name)
      paths.download(root / name, local)
      self._pushed[name] = _signature(local)

  def push(self) -> int:
    """Uploads the files of ``local`` that are new or changed since they
    were last pulled or pushed; returns how many."""
    if not self.remote:
      return 0
    count = 0
    for folder, _, files in os.walk(self.local):
      for file in sorted(files):
        local = os.path.join(folder, file)
        name = os.path.relpath(local, self.local)
        signature = _signature(local)
        if self._pushed.get(name) != signature:
          paths.upload(local, paths.join(self.dest, name))
          self._pushed[name] = signature
          count += 1
    return count

  def close(self) -> None:
    """Removes the local stand-in (after a last :meth:`push` if wanted)."""
    if self.remote:
      shutil.rmtree(self.local, ignore_errors=True)


@contextlib.contextmanager
def staged(dest: str, pull: bool = True) -> Iterator[Mirror]:
  """A :class:`Mirror` of ``dest`` (its files pulled first when ``pull``),
  pushed when the block succeeds and removed either way. A remote ``dest``
  gets its outputs only at the end of the block."""
  mirror = Mirror(dest)
  try:
    if pull:
      mirror.pull()
    yield mirror
    mirror.push()
  finally:
    mirror.close()


@contextlib.contextmanager
def pulled(src: str) -> Iterator[str]:
  """A local folder holding the files of the folder ``src`` (``src`` itself
  when local), for readers that take local paths; a copy is removed at the
  end and never pushed back.

  Raises:
    FileNotFoundError: a non-local ``src`` that is not a folder.
  """
  mirror = Mirror(src)
  if not mirror.remote:
    yield src
    return
  try:
    if not paths.as_path(mirror.dest).is_dir():
      raise FileNotFoundError(f"{src} does not exist")
    mirror.pull()
    yield mirror.local
  finally:
    mirror.close()
