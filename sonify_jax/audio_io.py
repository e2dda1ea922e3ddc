"""Reading and writing audio files (the only place that touches audio I/O).

Bad input (a missing, empty or undecodable file, no samples, NaN/Inf
samples) raises ``AudioReadError``, a ``UserError``: entry points show it as
one ``error:`` line. WAVs are written through ``atomic_io.atomic_path``.
"""
import os
import tempfile
from typing import Tuple
import warnings

import numpy as np

from sonify_jax import atomic_io
from sonify_jax import paths
from sonify_jax.errors import UserError
# The datasets' rate (data.sources.SAMPLE_RATE is the same value; that module
# reads files through this one, so the value comes from where both get it).
from sonify_jax.models.registry import CNN12_SAMPLE_RATE as SAMPLE_RATE


# What counts as an audio file by its extension (folders of clips).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".opus",
                    ".aac", ".webm", ".aif", ".aiff", ".au")


class AudioReadError(UserError, IOError):
  """A file could not be decoded as usable audio."""


def to_mono_float(audio: np.ndarray) -> np.ndarray:
  """[time] or [time, channels] samples -> float32 mono [time]."""
  audio = np.asarray(audio)
  if np.issubdtype(audio.dtype, np.integer):
    audio = audio.astype(np.float32) / float(np.iinfo(audio.dtype).max)
  audio = audio.astype(np.float32)
  if audio.ndim == 2:
    audio = audio.mean(axis=1)
  elif audio.ndim != 1:
    raise UserError(f"audio must be [time] or [time, channels], "
                    f"got {audio.shape}")
  return audio


def resample(audio: np.ndarray, orig_sr: int,
             target_sr: int = SAMPLE_RATE) -> np.ndarray:
  """Band-limited resampling (soxr through librosa)."""
  if orig_sr == target_sr:
    return np.asarray(audio, np.float32)
  import librosa  # pylint: disable=g-import-not-at-top
  return librosa.resample(np.asarray(audio, np.float32), orig_sr=orig_sr,
                          target_sr=target_sr, res_type="soxr_hq"
                          ).astype(np.float32)


def load_audio(path: str, sample_rate: int = SAMPLE_RATE
               ) -> np.ndarray:
  """Decode any soundfile/audioread-readable file to float32 mono at
  ``sample_rate``. Raises AudioReadError for a missing or undecodable file."""
  audio, sr = read_audio(path)
  return resample(audio, sr, sample_rate)


def read_audio(path: str) -> Tuple[np.ndarray, int]:
  """Decode to float32 mono at the file's own rate; ``path`` may be a
  ``gs://`` URL (read through a local copy: the decoders take files)."""
  if not paths.is_local(path):
    return _read_remote_audio(path)
  if not os.path.isfile(path):
    raise AudioReadError(f"no such audio file: {path}")
  if os.path.getsize(path) == 0:
    raise AudioReadError(f"{path} is an empty file (0 bytes)")
  try:
    import soundfile  # pylint: disable=g-import-not-at-top
    audio, sr = soundfile.read(path, dtype="float32", always_2d=False)
  except Exception as sf_error:  # pylint: disable=broad-except
    try:  # compressed formats soundfile lacks (e.g. some mp3/m4a builds)
      import librosa  # pylint: disable=g-import-not-at-top
      with warnings.catch_warnings():  # its fallback chatter is not news
        warnings.simplefilter("ignore")
        audio, sr = librosa.load(path, sr=None, mono=True)
    except Exception as error:  # pylint: disable=broad-except
      raise AudioReadError(
          f"cannot decode {path} as audio ({_first_line(sf_error)})"
          ) from error
  audio = to_mono_float(audio)
  if audio.size == 0:
    raise AudioReadError(f"{path} holds no samples")
  if not np.all(np.isfinite(audio)):
    raise AudioReadError(f"{path} holds NaN or Inf samples")
  return audio, int(sr)


def _first_line(error: BaseException) -> str:
  return (str(error).strip().splitlines() or [type(error).__name__])[0]


def write_wav(path: str, audio: np.ndarray,
              sample_rate: int = SAMPLE_RATE) -> str:
  """Write float audio as 16-bit PCM WAV; values are clipped to [-1, 1]."""
  import soundfile  # pylint: disable=g-import-not-at-top
  audio = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
  if not np.all(np.isfinite(audio)):
    raise ValueError(f"refusing to write non-finite audio to {path}")
  with atomic_io.atomic_path(path) as tmp:
    soundfile.write(tmp, audio, sample_rate, subtype="PCM_16", format="WAV")
  return path


def _read_remote_audio(url: str) -> Tuple[np.ndarray, int]:
  if not paths.as_path(url).is_file():
    raise AudioReadError(f"no such audio file: {url}")
  with tempfile.TemporaryDirectory(prefix="sonify_audio.") as folder:
    local = os.path.join(folder, paths.as_path(url).name)
    paths.download(url, local)
    try:
      return read_audio(local)
    except AudioReadError as error:  # name the file the user gave
      raise AudioReadError(str(error).replace(local, url)) from None
