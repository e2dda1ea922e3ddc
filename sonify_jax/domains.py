"""What a value may hold: the domains of config fields and of flags.

A ``Domain`` says whether a value lies in it (``error(value)`` is None), how
to say what it allows (``describe()``, used in the one ``error:`` line) and
which values lie outside it (``bad_values()``, so the tests can try one for
every field and flag). ``config_check.FIELDS`` maps the training config's
fields to domains, ``flag_check`` a command's flags.
"""
import math
import os
import re
from typing import Any, Callable, List, Optional, Sequence


class Domain:
  """What a field may hold; ``error(value)`` is None inside it."""

  required = True

  def error(self, value) -> Optional[str]:  # pragma: no cover - abstract
    raise NotImplementedError

  def describe(self) -> str:  # pragma: no cover - abstract
    raise NotImplementedError

  def bad_values(self) -> List[Any]:
    """Values outside the domain (the wrong type first)."""
    return [object()]


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value))


def _bounds(low, high) -> str:
  if low is not None and high is not None:
    return f"in {low}..{high}"
  if low is not None:
    return f">= {low}"
  if high is not None:
    return f"<= {high}"
  return ""


class Int(Domain):
  """An integer in [low, high], or one of ``also`` (e.g. -1 = 'derive')."""

  def __init__(self, low=None, high=None, also=(), meaning=""):
    self.low, self.high, self.also, self.meaning = low, high, tuple(also), \
        meaning

  def error(self, value):
    if not _is_int(value):
      return "wrong type"
    if value in self.also:
      return None
    if self.low is not None and value < self.low:
      return "too small"
    if self.high is not None and value > self.high:
      return "too large"
    return None

  def describe(self):
    text = " ".join(filter(None, ["an integer", _bounds(self.low,
                                                         self.high)]))
    for v in self.also:
      text += f" or {v}"
    return text + (f" ({self.meaning})" if self.meaning else "")

  def bad_values(self):
    bad = ["1", 1.5, True]
    if self.low is not None:
      bad += [v for v in (self.low - 1, self.low - 10) if v not in self.also]
    if self.high is not None:
      bad.append(self.high + 1)
    return bad


class Float(Domain):
  """A finite number (an int is fine) in its bounds."""

  def __init__(self, low=None, high=None, low_open=False, high_open=False,
               meaning=""):
    self.low, self.high = low, high
    self.low_open, self.high_open, self.meaning = low_open, high_open, meaning

  def error(self, value):
    if not _is_number(value):
      return "not a finite number"
    if self.low is not None and (value < self.low or (
        self.low_open and value == self.low)):
      return "too small"
    if self.high is not None and (value > self.high or (
        self.high_open and value == self.high)):
      return "too large"
    return None

  def describe(self):
    if self.low is not None and self.high is not None:
      where = (f"in {'(' if self.low_open else '['}{self.low:g}, "
               f"{self.high:g}{')' if self.high_open else ']'}")
    elif self.low is not None:
      where = f"{'>' if self.low_open else '>='} {self.low:g}"
    elif self.high is not None:
      where = f"{'<' if self.high_open else '<='} {self.high:g}"
    else:
      where = ""
    text = " ".join(filter(None, ["a number", where]))
    return text + (f" ({self.meaning})" if self.meaning else "")

  def bad_values(self):
    bad = ["0.5", float("nan"), float("inf"), True]
    if self.low is not None:
      bad.append(self.low if self.low_open else self.low - 1)
    if self.high is not None:
      bad.append(self.high if self.high_open else self.high + 1)
    return bad


def Probability():  # pylint: disable=invalid-name
  return Float(0.0, 1.0)


class Bool(Domain):

  def error(self, value):
    return None if isinstance(value, bool) else "not a bool"

  def describe(self):
    return "True or False"

  def bad_values(self):
    return ["yes", 1, None]


class Choice(Domain):

  def __init__(self, choices: Sequence[Any]):
    self.choices = tuple(choices)

  def error(self, value):
    return None if isinstance(value, str) and value in self.choices else (
        "not a choice")

  def describe(self):
    return "one of " + ", ".join(repr(c) for c in self.choices)

  def bad_values(self):
    return ["bogus", 3, None]


class Text(Domain):
  """A string; ``pattern`` (a regex it must match in full) if given."""

  def __init__(self, pattern: str = "", what: str = "a string",
               required: bool = True):
    self.pattern, self.what, self.required = pattern, what, required

  def error(self, value):
    if not isinstance(value, str):
      return "not a string"
    if self.pattern and not re.fullmatch(self.pattern, value):
      return "malformed"
    return None

  def describe(self):
    return self.what

  def bad_values(self):
    bad = [3, None]
    if self.pattern and not re.fullmatch(self.pattern, "bad value!"):
      bad.append("bad value!")
    return bad


class Path(Domain):
  """A path string ('' when ``empty_ok``); an existing local path must be a
  folder (a gs:// path is not looked at)."""

  def __init__(self, empty_ok: bool = True, meaning: str = "",
               required: bool = True):
    self.empty_ok, self.meaning, self.required = empty_ok, meaning, required

  def error(self, value):
    if not isinstance(value, str):
      return "not a string"
    if not value:
      return None if self.empty_ok else "empty"
    if "://" not in value:
      local = os.path.expanduser(value)
      if os.path.exists(local) and not os.path.isdir(local):
        return "not a folder"
    return None

  def describe(self):
    text = "a folder path" + (" or ''" if self.empty_ok else "")
    return text + (f" ({self.meaning})" if self.meaning else "")

  def bad_values(self):
    return [3, None] + ([] if self.empty_ok else [""])


class Pair(Domain):
  """(low, high): two finite numbers with low <= high, each >= ``low``."""

  def __init__(self, low=None):
    self.low = low

  def error(self, value):
    if isinstance(value, (str, bytes)) or not isinstance(
        value, (tuple, list)) or len(value) != 2:
      return "not a pair"
    if not all(_is_number(v) for v in value):
      return "not numbers"
    if value[0] > value[1]:
      return "low > high"
    if self.low is not None and value[0] < self.low:
      return "too small"
    return None

  def describe(self):
    return ("(low, high), two numbers with low <= high" +
            (f", both >= {self.low:g}" if self.low is not None else ""))

  def bad_values(self):
    bad = ["1,2", (1.0,), (2.0, 1.0), (0.0, float("nan"))]
    if self.low is not None:
      bad.append((self.low - 1, self.low + 1))
    return bad


class IntList(Domain):
  """A tuple/list of integers, each >= ``low``."""

  def __init__(self, low: int = 0, meaning: str = ""):
    self.low, self.meaning = low, meaning

  def error(self, value):
    if isinstance(value, (str, bytes)) or not isinstance(value,
                                                          (tuple, list)):
      return "not a list"
    if not all(_is_int(v) and v >= self.low for v in value):
      return "bad item"
    return None

  def describe(self):
    return (f"a list of integers >= {self.low}" +
            (f" ({self.meaning})" if self.meaning else ""))

  def bad_values(self):
    return ["1,2", 3, (self.low - 1,), (1.5,)]


class Regex(Domain):

  def __init__(self, required: bool = True):
    self.required = required

  def error(self, value):
    if not isinstance(value, str):
      return "not a string"
    try:
      re.compile(value)
    except re.error:
      return "not a regex"
    return None

  def describe(self):
    return "a regular expression (or '')"

  def bad_values(self):
    return [3, "(unclosed"]


class Optional_(Domain):  # pylint: disable=invalid-name
  """A field a config may leave out (then the trainer's default holds)."""

  def __init__(self, inner: Domain):
    self.inner = inner
    self.required = False

  def error(self, value):
    return self.inner.error(value)

  def describe(self):
    return self.inner.describe()

  def bad_values(self):
    return self.inner.bad_values()


class Lazy(Domain):
  """A domain built on first use (its choices come from another module)."""

  def __init__(self, make: Callable[[], Domain]):
    self._make, self._domain = make, None

  @property
  def domain(self) -> Domain:
    if self._domain is None:
      self._domain = self._make()
    return self._domain

  def error(self, value):
    return self.domain.error(value)

  def describe(self):
    return self.domain.describe()

  def bad_values(self):
    return self.domain.bad_values()


class OrNone(Domain):
  """None (a flag left unset) or a value of ``inner``."""

  def __init__(self, inner: Domain):
    self.inner = inner

  def error(self, value):
    return None if value is None else self.inner.error(value)

  def describe(self):
    return self.inner.describe()

  def bad_values(self):
    return [v for v in self.inner.bad_values() if v is not None]


class ListOf(Domain):
  """A list of strings (a comma-separated list flag) whose every item,
  read with ``parse`` (int, float, str), lies in ``item``; ``empty_ok``
  allows no items."""

  def __init__(self, item: Domain, parse: Callable[[str], Any] = int,
               empty_ok: bool = False):
    self.item, self.parse, self.empty_ok = item, parse, empty_ok

  def error(self, value):
    if isinstance(value, (str, bytes)) or not isinstance(value,
                                                          (tuple, list)):
      return "not a list"
    if not value and not self.empty_ok:
      return "empty"
    for text in value:
      try:
        item = self.parse(str(text).strip())
      except ValueError:
        return "unreadable item"
      if self.item.error(item) is not None:
        return "bad item"
    return None

  def describe(self):
    return ("a comma-separated list" + (" (or none)" if self.empty_ok else "")
            + f", each {self.item.describe()}")

  def bad_values(self):
    bad = [[str(v)] for v in self.item.bad_values()
           if isinstance(v, (int, float, str)) and not isinstance(v, bool)]
    return bad + ([] if self.empty_ok else [[]])


class TextList(Domain):
  """A list of strings, each matching ``pattern`` in full (a repeatable
  KEY=VALUE flag, ...)."""

  def __init__(self, pattern: str, what: str):
    self.pattern, self.what = pattern, what

  def error(self, value):
    if isinstance(value, (str, bytes)) or not isinstance(value,
                                                          (tuple, list)):
      return "not a list"
    if not all(isinstance(v, str) and re.fullmatch(self.pattern, v)
               for v in value):
      return "malformed"
    return None

  def describe(self):
    return self.what

  def bad_values(self):
    return [["bad value!"]]


class Either(Domain):
  """A value of ``first`` or of ``second`` (``what`` says it in words)."""

  def __init__(self, first: Domain, second: Domain, what: str = ""):
    self.first, self.second, self.what = first, second, what

  def error(self, value):
    return (None if self.first.error(value) is None else
            self.second.error(value))

  def describe(self):
    return self.what or f"{self.first.describe()}, or {self.second.describe()}"

  def bad_values(self):
    return [v for v in self.first.bad_values() + self.second.bad_values()
            if self.error(v) is not None]
