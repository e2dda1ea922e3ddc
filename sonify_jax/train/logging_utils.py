"""Metric logging for trainers: TensorBoard event files, metrics.jsonl, progress.

TensorFlow is not a dependency, so TensorBoard event files are written by a
small self-contained writer (TFRecord framing + hand-encoded ``Event`` protos
holding scalar summaries). TensorBoard reads them like any other event file.

Only process 0 writes; :class:`MetricWriter` is a no-op on other processes so
call sites need not branch.
"""
import json
import math
import os
import socket
import struct
import sys
import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np

# --- CRC32C (Castagnoli), as TFRecord framing requires. ---------------------

_CRC32C_POLY = 0x82F63B78


def _make_crc_table():
  table = []
  for i in range(256):
    crc = i
    for _ in range(8):
      crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
    table.append(crc)
  return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes) -> int:
  """CRC-32C of ``data`` (reflected, init and final xor 0xFFFFFFFF)."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --- Minimal protobuf encoding of tensorflow.Event / Summary. ----------------


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1  # int64 two's complement, as protobuf does.
  out = bytearray()
  while True:
    bits = value & 0x7F
    value >>= 7
    if value:
      out.append(bits | 0x80)
    else:
      out.append(bits)
      return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
  return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _scalar_value(tag: str, value: float) -> bytes:
  # Summary.Value: tag = 1 (string), simple_value = 2 (float).
  return (_length_delimited(1, tag.encode("utf-8")) +
          _varint(2 << 3 | 5) + struct.pack("<f", value))


def encode_event(wall_time: float, step: int,
                 scalars: Optional[Mapping[str, float]] = None,
                 file_version: Optional[str] = None) -> bytes:
  """Serialised ``tensorflow.Event`` with a Summary of scalar values."""
  # Event: wall_time = 1 (double), step = 2 (int64), file_version = 3,
  # summary = 5.
  out = _varint(1 << 3 | 1) + struct.pack("<d", wall_time)
  out += _varint(2 << 3 | 0) + _varint(int(step))
  if file_version is not None:
    out += _length_delimited(3, file_version.encode("utf-8"))
  if scalars:
    summary = b"".join(_length_delimited(1, _scalar_value(t, v))
                       for t, v in scalars.items())
    out += _length_delimited(5, summary)
  return out


def frame_record(data: bytes) -> bytes:
  """TFRecord framing: length, masked CRC of length, data, masked CRC."""
  header = struct.pack("<Q", len(data))
  return (header + struct.pack("<I", _masked_crc(header)) + data +
          struct.pack("<I", _masked_crc(data)))


class EventFileWriter:
  """Appends scalar summaries to ``logdir/events.out.tfevents.<time>.<host>``.

  Each record is flushed as written, so a killed run leaves a readable file
  (TensorBoard ignores a truncated last record).
  """

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
    self.path = os.path.join(logdir, name)
    # A restarted run in the same second must not clobber the old file.
    suffix = 0
    while os.path.exists(self.path):
      suffix += 1
      self.path = os.path.join(logdir, f"{name}.{suffix}")
    self._file = open(self.path, "ab")
    self._write(encode_event(time.time(), 0, file_version="brain.Event:2"))

  def _write(self, event: bytes) -> None:
    self._file.write(frame_record(event))
    self._file.flush()

  def scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    self._write(encode_event(time.time(), step, scalars=scalars))

  def close(self) -> None:
    if not self._file.closed:
      self._file.close()


def _read_varint(buf: bytes, pos: int) -> Tuple[int, int]:
  result = shift = 0
  while True:
    byte = buf[pos]
    pos += 1
    result |= (byte & 0x7F) << shift
    shift += 7
    if not byte & 0x80:
      return result, pos


def _parse_fields(buf: bytes) -> Iterator[Tuple[int, int, Any]]:
  """(field, wire type, raw value) of a protobuf message."""
  pos = 0
  while pos < len(buf):
    key, pos = _read_varint(buf, pos)
    field, wire = key >> 3, key & 7
    if wire == 0:
      value, pos = _read_varint(buf, pos)
    elif wire == 1:
      value, pos = buf[pos:pos + 8], pos + 8
    elif wire == 2:
      length, pos = _read_varint(buf, pos)
      value, pos = buf[pos:pos + length], pos + length
    elif wire == 5:
      value, pos = buf[pos:pos + 4], pos + 4
    else:
      raise ValueError(f"unsupported protobuf wire type {wire}")
    yield field, wire, value


def read_event_scalars(path: str) -> List[Tuple[int, str, float]]:
  """(step, tag, value) of every scalar in an event file; checks the CRCs.

  A truncated final record (a killed writer) is ignored, as TensorBoard does.
  """
  with open(path, "rb") as f:
    data = f.read()
  out, pos = [], 0
  while pos + 12 <= len(data):
    header = data[pos:pos + 8]
    (length,) = struct.unpack("<Q", header)
    (header_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
    if header_crc != _masked_crc(header):
      raise ValueError(f"{path}: corrupt record header at byte {pos}")
    end = pos + 12 + length + 4
    if end > len(data):
      break
    payload = data[pos + 12:pos + 12 + length]
    (payload_crc,) = struct.unpack("<I", data[end - 4:end])
    if payload_crc != _masked_crc(payload):
      raise ValueError(f"{path}: corrupt record payload at byte {pos}")
    pos = end
    step = 0
    for field, _, value in _parse_fields(payload):
      if field == 2:
        step = value
      elif field == 5:
        for vfield, _, raw_value in _parse_fields(value):
          if vfield != 1:
            continue
          tag, simple = None, None
          for f2, _, v2 in _parse_fields(raw_value):
            if f2 == 1:
              tag = v2.decode("utf-8")
            elif f2 == 2:
              (simple,) = struct.unpack("<f", v2)
          if tag is not None and simple is not None:
            out.append((step, tag, simple))
  return out


def read_jsonl(path: str) -> List[Dict[str, Any]]:
  """Records of a metrics.jsonl; a torn last line (killed run) is skipped."""
  records = []
  with open(path) as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return records


def _to_float(value) -> float:
  value = float(np.asarray(value))
  return value


class MetricWriter:
  """Scalars to TensorBoard event files and ``metrics.jsonl`` in ``workdir``.

  A restarted run appends; in metrics.jsonl later lines for a step win.
  Writes only when ``enabled`` (process 0).
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self._events = None
    self._jsonl = None
    if enabled:
      os.makedirs(workdir, exist_ok=True)
      self._events = EventFileWriter(workdir)
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    if not self.enabled or not scalars:
      return
    values = {k: _to_float(v) for k, v in scalars.items()}
    self._events.scalars(step, values)
    record = {"step": int(step), "time": time.time()}
    # JSON has no NaN/inf; keep them visible as strings.
    record.update({k: (v if math.isfinite(v) else str(v))
                   for k, v in values.items()})
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      self._events.close()
      self._jsonl.close()


class Progress:
  """Progress bar with loss and clips/s on process 0 (tqdm when installed).

  Falls back to a log line every ``log_every`` steps without tqdm.
  """

  def __init__(self, total: int, initial: int, enabled: bool = True,
               desc: str = "train"):
    self.enabled = enabled
    self._bar = None
    self._last = time.time()
    if not enabled:
      return
    try:
      import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm.tqdm(total=total, initial=initial, desc=desc,
                            dynamic_ncols=True, file=sys.stderr,
                            mininterval=1.0)
    except ImportError:
      self._bar = None
    self._total = total

  def update(self, step: int, n: int = 1, **postfix) -> None:
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.update(n)
      if postfix:
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()},
                              refresh=False)
    elif postfix and time.time() - self._last > 10:
      self._last = time.time()
      text = " ".join(f"{k}={v:.4g}" for k, v in postfix.items())
      print(f"step {step}/{self._total} {text}", file=sys.stderr, flush=True)

  def write(self, text: str) -> None:
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.write(text, file=sys.stderr)
    else:
      print(text, file=sys.stderr, flush=True)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
