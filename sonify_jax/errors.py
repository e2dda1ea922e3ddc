"""The one exception type for expected failures caused by what a user gave us.

Bad paths, bad audio, bad configs, bad indices: library code raises
``UserError`` (a ``ValueError``, so existing ``except ValueError`` callers keep
working) with a message that reads well on its own line. Entry points turn it
into one ``error: <message>`` line on stderr and exit status 2; anything else
is a bug and keeps its traceback.
"""


class UserError(ValueError):
  """An expected failure: the message is shown to the user as one line."""
