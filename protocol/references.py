"""Two links any member entry may carry besides its kind's own fields (SPEC.md §18.4, §18.6).

- `rules`: the closing entries (`gov.close`) of the amendments the author's node
  had applied when it wrote the entry. They are dependencies: naming them puts the
  amendments in the entry's causal past, so the entry, and every later entry of its
  chain, is checked under the amended rules on every node.
- `cites`: entries of *other* ledgers (a coop's own ledger, cited in its federation's),
  by CID. They are not dependencies (they live in another ledger, which this
  ledger's peers may not be allowed to see): nothing of the cited ledger is copied,
  and only a node that may see it can resolve the CID.

`split` takes them out of a payload before the kind's own parser reads the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .cid import CID
from .errors import InvalidData

RULES_KEY: Final = "rules"
CITES_KEY: Final = "cites"
MAX_RULES_LINKS: Final = 64
MAX_CITES: Final = 64


@dataclass(frozen=True, slots=True)
class References:
    rules: tuple[CID, ...] = ()
    cites: tuple[CID, ...] = ()


NO_REFERENCES: Final = References()


def _links(body: Mapping[str, Any], key: str, limit: int) -> tuple[CID, ...]:
    value = body.get(key, [])
    if not isinstance(value, list) or len(value) > limit or not all(isinstance(c, CID) for c in value):
        raise InvalidData("bad_reference", f"{key} must be a list of at most {limit} links")
    raws = [c.raw for c in value]
    if raws != sorted(set(raws)):
        raise InvalidData("bad_reference", f"{key}: sorted by their binary CID, no duplicates")
    return tuple(value)


def split(body: dict[str, Any]) -> tuple[dict[str, Any], References]:
    """The payload without `rules` and `cites` (the same dict when it has neither), and those links
    (sorted, unique; `bad_reference` otherwise)."""
    if RULES_KEY not in body and CITES_KEY not in body:
        return body, NO_REFERENCES
    rest = {k: v for k, v in body.items() if k not in (RULES_KEY, CITES_KEY)}
    return rest, References(_links(body, RULES_KEY, MAX_RULES_LINKS), _links(body, CITES_KEY, MAX_CITES))


def add(body: dict[str, Any], *, rules: tuple[CID, ...] = (), cites: tuple[CID, ...] = ()) -> dict[str, Any]:
    """`body` with those links added in their canonical form (omitted when empty)."""
    result = dict(body)
    if rules:
        result[RULES_KEY] = sorted(set(rules), key=lambda c: c.raw)
    if cites:
        result[CITES_KEY] = sorted(set(cites), key=lambda c: c.raw)
    return result
