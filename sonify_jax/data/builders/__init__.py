"""TFDS builders (array_record, no TensorFlow) for the thesis datasets.

``BUILDERS`` maps the catalogue name ('audioset', 'fsd50k',
'speech_commands', 'voxceleb1') to its builder class; ``build`` prepares one
from its official layout; ``catalog.get_source`` reads it back.
"""
from typing import Optional

from sonify_jax.data.builders import base
from sonify_jax.data.builders.audioset import Audioset8khz
from sonify_jax.data.builders.fsd50k import Fsd50k8khz
from sonify_jax.data.builders.speech_commands import SpeechCommands8khz
from sonify_jax.data.builders.voxceleb1 import Voxceleb18khz

BUILDERS = {
    "audioset": Audioset8khz,
    "fsd50k": Fsd50k8khz,
    "speech_commands": SpeechCommands8khz,
    "voxceleb1": Voxceleb18khz,
}


def get_builder(name: str, data_dir: str, manual_dir: Optional[str] = None,
                num_workers: int = 1) -> base.AudioClipBuilder:
  """The builder for catalogue ``name`` writing to / reading ``data_dir``."""
  if name not in BUILDERS:
    raise ValueError(f"no builder for {name!r}; known: {sorted(BUILDERS)}")
  return BUILDERS[name](data_dir=data_dir, manual_dir=manual_dir,
                        num_workers=num_workers)


def build(name: str, manual_dir: str, data_dir: str,
          num_workers: int = 1) -> base.AudioClipBuilder:
  """Prepares dataset ``name`` from ``manual_dir`` (official layout) into
  ``data_dir``; a no-op if it is already prepared there. Returns the
  builder; the skip report is ``builder.data_dir/skipped_clips.tsv``."""
  builder = get_builder(name, data_dir, manual_dir, num_workers)
  builder.download_and_prepare()
  return builder
