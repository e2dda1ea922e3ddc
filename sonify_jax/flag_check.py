"""A command's flags checked against their domains while absl parses them.

A script lists every flag it defines in a ``FLAG_DOMAINS`` table (flag name
-> a ``sonify_jax.domains`` domain, or ``ANY`` where the flag's own type
already says everything: an enum, a bool, a free name) and calls
``register(FLAG_DOMAINS)`` after defining them. Each domain becomes an absl
flag validator, so a bad value stops the command while its flags are
parsed, before ``main`` loads, compiles or writes anything, and
``sonify_jax.cli`` turns it into the one line

  error: flag --steps=0: must be an integer >= 1

The validators are absl's own mechanism (``flags.register_validator``); what
this module adds is that the domains, their wording and their
``bad_values()`` are the ones the config fields use, so the tests can try a
bad value for every flag of every script the way they do for every field.
"""
from typing import Dict, Mapping, Optional

from absl import flags

from sonify_jax.domains import Domain

ANY = None  # FLAG_DOMAINS value: the flag's type is its whole domain

# Every table registered in this process, merged: what the tests walk.
_REGISTERED: Dict[str, Optional[Domain]] = {}


def _validator(domain: Domain):
  def is_valid(value) -> bool:
    return domain.error(value) is None
  return is_valid


def register(domains: Mapping[str, Optional[Domain]],
             flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Adds one validator per flag of ``domains`` that has a domain; a second
  call for the same flags (an entry point run again in one process) adds
  nothing."""
  _REGISTERED.update(domains)
  for name, domain in domains.items():
    if domain is None:
      continue
    flag = flag_values[name]  # KeyError: the table names an undefined flag
    if any(getattr(v, "sonify_domain", None) is domain
           for v in flag.validators):
      continue
    flags.register_validator(name, _validator(domain),
                             message=f"must be {domain.describe()}",
                             flag_values=flag_values)
    flag.validators[-1].sonify_domain = domain


def registered() -> Dict[str, Optional[Domain]]:
  """Flag name -> domain (or ``ANY``) of every table registered so far."""
  return dict(_REGISTERED)
