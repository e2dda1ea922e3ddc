"""A fake ``gs://`` bucket on local disk, for tests, in-process or around an
entry point (``python tests/fake_gcs.py ROOT MODULE ARGS...`` runs
``python -m MODULE ARGS...`` with the fake installed).

etils.epath 1.15 routes only gs://, s3://, az://, hf:// to its fsspec backend
(``memory://`` and ``file://`` are refused or taken as local), and a real
gs:// needs gcsfs and a network. So ``gs://bucket/key`` is served from
``ROOT/bucket/key`` by an fsspec filesystem registered under the gs/gcs
protocols: epath then takes its non-``os.path`` backend for every gs:// call,
and an ``os.path`` call on such a URL finds nothing (it would look under the
working directory). The two readers that bypass fsspec on gs:// are pointed
at the same bytes: orbax's TensorStore (its gcs kvstore driver becomes the
file driver; the bucket is flat, no hierarchical namespace) and array_record
(its C++ GCS reader becomes a file read). What this does not test is
gcsfs / TensorStore / riegeli talking to real GCS.
"""
import importlib
import os
import runpy
import sys

from array_record.python import array_record_data_source
from etils.epath import backend as epath_backend
import fsspec
from fsspec.implementations.dirfs import DirFileSystem
from fsspec.implementations.local import LocalFileSystem
from orbax.checkpoint._src.path import gcs_utils

PROTOCOLS = ("gs", "gcs")
ARRAY_RECORD_URLS = []  # the URLs array_record was asked to open


class FakeGcs(DirFileSystem):
  """fsspec filesystem: ``gs://bucket/key`` is ``root/bucket/key``."""
  protocol = PROTOCOLS
  cachable = False  # a new root for each test
  root = None

  def __init__(self, *args, finalize_on_close=None, **kwargs):
    del args, kwargs, finalize_on_close  # gcsfs's options, passed by epath
    # auto_mkdir: an object store needs no folders before a write.
    super().__init__(path=self.root, fs=LocalFileSystem(auto_mkdir=True))


def local_key(url) -> str:
  """Where the fake bucket keeps ``url``'s bytes."""
  return os.path.join(FakeGcs.root, os.fspath(url).split("://", 1)[1])


def install(root: str, setattr_=setattr):
  """Serves gs:// from ``root``; ``setattr_`` may be pytest's
  ``monkeypatch.setattr`` (undone by it). Returns :func:`uninstall`."""
  FakeGcs.root = root
  os.makedirs(root, exist_ok=True)
  for protocol in PROTOCOLS:
    fsspec.register_implementation(protocol, FakeGcs, clobber=True)
  epath_backend.fsspec_backend._get_filesystem.cache_clear()  # pylint: disable=protected-access
  setattr_(gcs_utils, "get_kvstore_for_gcs", lambda url: {
      "driver": "file", "path": local_key(url)})
  setattr_(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False)
  create_reader = array_record_data_source._create_reader  # pylint: disable=protected-access

  def reader(name, *args):
    if "://" not in os.fspath(name):
      return create_reader(name, *args)
    ARRAY_RECORD_URLS.append(os.fspath(name))
    return create_reader(local_key(name), *args)
  ARRAY_RECORD_URLS.clear()
  setattr_(array_record_data_source, "_create_reader", reader)
  return uninstall


def uninstall() -> None:
  epath_backend.fsspec_backend._get_filesystem.cache_clear()  # pylint: disable=protected-access
  registered = importlib.import_module("fsspec.registry")._registry  # pylint: disable=protected-access
  for protocol in PROTOCOLS:
    registered.pop(protocol, None)


if __name__ == "__main__":
  install(sys.argv[1])
  module = sys.argv[2]
  sys.argv = [module] + sys.argv[3:]
  runpy.run_module(module, run_name="__main__", alter_sys=True)
