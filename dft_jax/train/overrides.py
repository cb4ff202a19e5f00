"""One readable line for a --config.k=v override that config_flags rejects.

A typo'd field reaches the caller as AttributeError(KeyError(text)) whose str() is a repr: quotes
escaped and a literal "\\n" before ml_collections' "Did you mean" hint. The train CLI and the
sweep builder both report it through `error_line`, so the two say the same thing.
"""

from __future__ import annotations

import re
from typing import Sequence

from absl import flags

_OVERRIDE = re.compile(r"-{1,2}config\.([^=]+)")
_HINT = re.compile(r'Did you mean "([^"]*)"')


def _text(e: BaseException) -> str:
  """The innermost error's own text (args[0], not str(): a KeyError's str() is a repr)."""
  while e.args and isinstance(e.args[0], BaseException):
    e = e.args[0]
  return e.args[0] if e.args and isinstance(e.args[0], str) else str(e)


def error_line(e: BaseException, argv: Sequence[str]) -> str:
  """'bad --config override --config.loss.lamda: no field 'lamda' (did you mean "lam"?)' for a
  field that does not exist, naming the override from `argv`; else the error's first line."""
  first, *rest = _text(e).splitlines() or [""]
  if isinstance(e, flags.Error):  # absl's own messages already name the flag
    return first
  key = re.fullmatch(r"'([^']*)'", first.strip())
  if not key:
    return f"bad --config override: {first}"
  field = key.group(1)
  paths = [m.group(1) for m in map(_OVERRIDE.match, argv) if m]
  where = next((f" --config.{p}" for p in paths if field in p.split(".")), "")
  hints = [m.group(1) for m in map(_HINT.search, rest) if m]
  hint = f' (did you mean "{hints[0]}"?)' if hints else ""
  return f"bad --config override{where}: no field {field!r}{hint}"
