"""TFDS builders (array_record, no TensorFlow) for the thesis datasets and
your own labelled folders.

``BUILDERS`` maps the catalogue name ('audioset', 'fsd50k',
'speech_commands', 'speech_commands12', 'voxceleb1', 'folder') to its
builder class; folder datasets are named 'folder:<name>'. ``build`` prepares
one from its layout (refusing to reuse a build of another manual_dir, see
provenance.py); ``catalog.get_source`` reads it back.
"""
import logging
import os
import shutil
import tempfile
from typing import Optional

from sonify_jax import paths
from sonify_jax.data.builders import base
from sonify_jax.data.builders import folder
from sonify_jax.data.builders import provenance
from sonify_jax.data.builders.audioset import Audioset8khz
from sonify_jax.data.builders.folder import Folder8khz
from sonify_jax.data.builders.fsd50k import Fsd50k8khz
from sonify_jax.data.builders.speech_commands import SpeechCommands12Class8khz
from sonify_jax.data.builders.speech_commands import SpeechCommands8khz
from sonify_jax.data.builders.voxceleb1 import Voxceleb18khz
from sonify_jax.errors import UserError

BUILDERS = {
    "audioset": Audioset8khz,
    "folder": Folder8khz,
    "fsd50k": Fsd50k8khz,
    "speech_commands": SpeechCommands8khz,
    "speech_commands12": SpeechCommands12Class8khz,
    "voxceleb1": Voxceleb18khz,
}


def folder_dataset(name: str, data_dir: Optional[str],
                   manual_dir: Optional[str] = None) -> str:
  """The folder dataset's own name from 'folder:<name>' or 'folder' (then:
  the manual_dir's name, else the only folder dataset in data_dir)."""
  _, _, sub = name.partition(":")
  if sub:
    return folder.dataset_name(sub)
  if manual_dir:
    return folder.dataset_name(manual_dir)
  names = folder.prepared_names(data_dir) if data_dir else []
  if len(names) == 1:
    return names[0]
  raise UserError(
      f"'folder' is ambiguous in {data_dir}: it holds "
      f"{len(names)} folder datasets ({', '.join(names) or 'none'}); name "
      f"one as 'folder:<name>'")


def get_builder(name: str, data_dir: str, manual_dir: Optional[str] = None,
                num_workers: int = 1, **options) -> base.AudioClipBuilder:
  """The builder for catalogue ``name`` writing to / reading ``data_dir``.

  ``options`` (folder datasets only): group_regex, split_percent,
  split_seed (see builders/folder.py).
  """
  kind = name.partition(":")[0] if isinstance(name, str) else name
  if kind not in BUILDERS or (":" in name and kind != "folder"):
    raise UserError(f"no builder for {name!r}; known: {sorted(BUILDERS)} "
                    f"(folder datasets also as 'folder:<name>')")
  if kind == "folder":
    return Folder8khz(dataset=folder_dataset(name, data_dir, manual_dir),
                      data_dir=data_dir, manual_dir=manual_dir,
                      num_workers=num_workers, **options)
  used = sorted(k for k, v in options.items() if v not in (None, ""))
  if used:
    raise UserError(f"{', '.join(used)} only apply to folder datasets, "
                    f"not {name}")
  return BUILDERS[name](data_dir=data_dir, manual_dir=manual_dir,
                        num_workers=num_workers)


def is_prepared(builder: base.AudioClipBuilder) -> bool:
  return os.path.isfile(os.path.join(builder.data_dir, "dataset_info.json"))


def build(name: str, manual_dir: str, data_dir: str, num_workers: int = 1,
          overwrite: bool = False, **options) -> base.AudioClipBuilder:
  """Prepares dataset ``name`` from ``manual_dir`` into ``data_dir``.

  A build already there is reused only if it was made from the same
  ``manual_dir`` (absolute path, file count and bytes) with the same
  options; otherwise this raises ``UserError`` unless ``overwrite``, which
  rebuilds in a temporary folder inside ``data_dir`` and swaps the result in
  only when complete (a failed rebuild leaves the old build as it was).
  Returns the builder; the skip report is
  ``builder.data_dir/skipped_clips.tsv``.
  """
  if not manual_dir or not os.path.isdir(manual_dir):
    raise UserError(f"manual_dir {manual_dir!r} is not a directory (the "
                    f"dataset's root folder)")
  if not paths.is_local(data_dir):
    # The rebuild swap and provenance checks are local-folder operations.
    raise UserError(f"data_dir {data_dir}: datasets are built into a local "
                    f"folder; build into one, then copy its contents there "
                    f"(gcloud storage cp -r LOCAL_DATA_DIR/* {data_dir}/) "
                    f"and train with --config.data_dir={data_dir}")
  source, target = (os.path.realpath(d) for d in (manual_dir, data_dir))
  if os.path.commonpath([source, target]) == source:
    raise UserError(f"data_dir {data_dir} lies inside manual_dir "
                    f"{manual_dir}: the build would become part of its own "
                    f"source; put it elsewhere")
  builder = get_builder(name, data_dir, manual_dir, num_workers, **options)
  if not is_prepared(builder):
    builder.download_and_prepare()
    return builder
  current = provenance.source_record(manual_dir, builder.build_options())
  reason = provenance.mismatch(builder.info.metadata.get("source"), current)
  if reason is None:
    logging.info("%s is already built from %s", builder.data_dir, manual_dir)
    return builder
  if not overwrite:
    raise UserError(f"{builder.data_dir} {reason}; pass --overwrite to "
                    f"rebuild it from {manual_dir}, or use another "
                    f"--data_dir" + (" or --name" if isinstance(
                        builder, Folder8khz) else ""))
  logging.warning("rebuilding %s: it %s", builder.data_dir, reason)
  os.makedirs(data_dir, exist_ok=True)
  staging = tempfile.mkdtemp(prefix=".rebuild_", dir=data_dir)
  try:
    fresh = get_builder(name, staging, manual_dir, num_workers, **options)
    fresh.download_and_prepare()
    provenance.swap_in(fresh.data_dir, builder.data_dir)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return get_builder(name, data_dir, manual_dir, num_workers, **options)
