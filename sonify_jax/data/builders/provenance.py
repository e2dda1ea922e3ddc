"""What a build was made from, and replacing a build without losing it.

Every build records its source in ``info.metadata['source']``: the
``manual_dir`` as an absolute path, a cheap fingerprint of the files under
it (count and total bytes, one ``os.walk`` of stats, no reads) and the
builder's own options (e.g. the folder builder's group regex and split).
``builders.build`` compares that record with the ``manual_dir`` it is given
and refuses to reuse a build made from something else; ``--overwrite``
rebuilds into a temporary folder beside the old build and swaps it in only
once the new one is complete, so a failed rebuild leaves the old one intact.
TFDS has neither check: a prepared dataset is reused whatever manual_dir is
passed, and it cannot prepare over an existing build.
"""
import os
import shutil
from typing import Any, Dict, Optional


def source_record(manual_dir: str, options: Dict[str, Any]) -> Dict[str, Any]:
  """{'manual_dir': absolute path, 'num_files', 'num_bytes', 'options'}."""
  num_files = num_bytes = 0
  for dirpath, dirnames, filenames in os.walk(manual_dir):
    dirnames.sort()
    for filename in filenames:
      try:
        num_bytes += os.stat(os.path.join(dirpath, filename)).st_size
      except OSError:  # a dangling link: counted, not sized
        pass
      num_files += 1
  return {"manual_dir": os.path.abspath(manual_dir), "num_files": num_files,
          "num_bytes": num_bytes, "options": dict(options)}


def _plain(value):
  """JSON round trips turn tuples into lists; compare like with like."""
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def mismatch(recorded: Optional[Dict[str, Any]],
             current: Dict[str, Any]) -> Optional[str]:
  """Why a build recorded as ``recorded`` is not a build of ``current``
  (a phrase to follow 'the build at X'), or None when it is."""
  if not recorded or "manual_dir" not in recorded:
    return ("records no manual_dir (it was built before builds recorded "
            "their source)")
  if recorded["manual_dir"] != current["manual_dir"]:
    return (f"was built from {recorded['manual_dir']}, not "
            f"{current['manual_dir']}")
  then = (recorded.get("num_files"), recorded.get("num_bytes"))
  now = (current["num_files"], current["num_bytes"])
  if then != now:
    return (f"was built from {current['manual_dir']} when it held "
            f"{then[0]} files ({then[1]} bytes); it now holds {now[0]} "
            f"({now[1]} bytes)")
  old_options = _plain(recorded.get("options", {}))
  new_options = _plain(current.get("options", {}))
  if old_options != new_options:
    changed = sorted(k for k in set(old_options) | set(new_options)
                     if old_options.get(k) != new_options.get(k))
    return "was built with other options: " + ", ".join(
        f"{k}={old_options.get(k)!r} (now {new_options.get(k)!r})"
        for k in changed)
  return None


def swap_in(new_dir: str, final_dir: str) -> None:
  """Moves the complete build ``new_dir`` to ``final_dir``, replacing the
  build there. Both lie on one filesystem, so each step is a rename; if the
  second rename fails the old build is put back."""
  old = final_dir + f".old-{os.getpid()}"
  os.rename(final_dir, old)
  try:
    os.rename(new_dir, final_dir)
  except BaseException:
    os.rename(old, final_dir)
    raise
  shutil.rmtree(old, ignore_errors=True)
