"""The rates of a value equation: the actions they price and each action's claim value per unit (SPEC.md §14).

A rate key is a ValueFlows action, or `action:classification` for a finer rate (`work:engineering`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from .decimals import bounded_decimal
from .errors import InvalidData
from .rules_file import key_path, kind_of, read_table, read_text

#: The 19 actions of ValueFlows 1.0 (vf:Action individuals in all_vf.TTL), spelled as VF spells them.
ACTIONS: Final[frozenset[str]] = frozenset({
    "accept", "cite", "combine", "consume", "copy", "deliverService", "dropoff", "lower", "modify", "move",
    "pickup", "produce", "raise", "separate", "transfer", "transferAllRights", "transferCustody", "use", "work",
})
MAX_CLASSIFICATION_CHARS: Final = 128
_CLASSIFICATION: Final = re.compile(rf"[^\s\x00-\x1f\x7f]{{1,{MAX_CLASSIFICATION_CHARS}}}")
DEFAULT_RATES: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType({
    "work": MappingProxyType({"hour": "1"}),
    "transfer": MappingProxyType({"euro": "1"}),
    "use": MappingProxyType({"day": "1"}),
})


def read_action(value: object, path: str) -> str:
    action = read_text(value, path)
    if action not in ACTIONS:
        raise InvalidData(
            "unknown_action", f"{path}: {action!r} is not a ValueFlows action (one of {', '.join(sorted(ACTIONS))})"
        )
    return action


def read_rates(rates: Mapping[str, Any], *, canonical: bool) -> dict[str, dict[str, Decimal]]:
    """Decimals of `rates` (keys checked by Rules); canonical: only canonical strings (genesis bodies)."""
    result: dict[str, dict[str, Decimal]] = {}
    for key, per_unit in rates.items():
        path = key_path("rates", key)
        table = read_table(per_unit, path)
        result[key] = {
            unit: bounded_decimal(value, key_path(path, unit), low=Decimal(0), canonical=canonical)
            for unit, value in table.items()
        }
    return result


def check_rates(value: object, units: tuple[str, ...]) -> Mapping[str, Mapping[str, Decimal]]:
    if not isinstance(value, Mapping):
        raise InvalidData("bad_rules", f"rates: expected a table, got {kind_of(value)}")
    result: dict[str, Mapping[str, Decimal]] = {}
    for key in sorted(value, key=str):
        path = key_path("rates", key)
        action, colon, classification = read_text(key, f"rates: key {key!r}").partition(":")
        read_action(action, path)
        if colon and not _CLASSIFICATION.fullmatch(classification):
            raise InvalidData(
                "bad_rules", f"{path}: the classification after \"{action}:\" has 1 to {MAX_CLASSIFICATION_CHARS} "
                "characters and no spaces"
            )
        per_unit = value[key]
        if not isinstance(per_unit, Mapping):
            raise InvalidData("bad_rules", f"{path}: expected a table of unit = rate, got {kind_of(per_unit)}")
        if not per_unit:
            raise InvalidData("bad_rules", f"{path}: has no rate; give at least one unit = rate")
        rates: dict[str, Decimal] = {}
        for unit in sorted(per_unit, key=str):
            if unit not in units:
                raise InvalidData(
                    "unknown_unit", f"{key_path(path, unit)}: {unit!r} is not one of the units ({', '.join(units)})"
                )
            rates[unit] = bounded_decimal(per_unit[unit], key_path(path, unit), low=Decimal(0))
        result[key] = MappingProxyType(rates)
    return MappingProxyType(result)
