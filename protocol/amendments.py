"""Rule amendments: the partial rules tables that motions carry (SPEC.md §18.3).

An amendment passes with its motion (protocol/governance.py); the rules in effect are then the genesis rules
with every passed amendment in an entry's causal past applied (`RulesInEffect`, there).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from .buckets import DEFAULT_CLAIMS, DEFAULT_MODE, Bucket
from .decimals import format_decimal, parse_decimal
from .errors import InvalidData
from .rules import Rules, check_timezone

#: The keys of a rules table an amendment may change; the others (name, founders…) are fixed at genesis.
AMENDABLE: Final = frozenset({
    "rates", "units", "validation", "buckets", "voting", "log_for_others", "pledge_claims", "recovery", "timezone",
})
_VALIDATION_KEYS: Final = frozenset({"accept", "reject"})
_VOTING_KEYS: Final = frozenset({"min", "max", "blank", "quorum"})
_BUCKET_KEYS: Final = frozenset({"name", "percent", "recipient", "mode", "claims", "actions"})


def _bad(message: str) -> InvalidData:
    return InvalidData("bad_amendment", message)


@dataclass(frozen=True, slots=True)
class Amendment:
    """A partial rules table: the keys it gives replace the rules' own (SPEC.md §18.3).

    `[validation]` and `[voting]` change only the keys they give; each `[rates.KEY]`
    table replaces that key's rates (an empty table removes the key); `units`,
    `buckets` and `log_for_others` replace the whole value. `body` is the canonical
    form stored in a motion: decimals as canonical strings, buckets with every key.
    """

    body: Mapping[str, Any]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Amendment:
        """From a TOML amendment file or its JSON twin; decimals may be ints or non-canonical strings."""
        if not isinstance(config, Mapping) or not config:
            raise _bad("an amendment is a non-empty table of " + ", ".join(sorted(AMENDABLE)))
        unknown = sorted(str(k) for k in config if k not in AMENDABLE)
        if unknown:
            raise _bad(f"{unknown[0]}: not amendable (amendable: {', '.join(sorted(AMENDABLE))})")
        try:
            body = {key: _NORMALIZE[key](config[key]) for key in sorted(config)}
        except InvalidData as exc:
            raise _bad(f"{exc.code}: {exc.message}") from None
        return cls(MappingProxyType(body))

    @classmethod
    def from_body(cls, value: object) -> Amendment:
        """Strictly read a motion's `amend`: only the canonical form `from_config` writes."""
        if not isinstance(value, dict):
            raise _bad("amend must be a map")
        amendment = cls.from_config(value)
        if amendment.to_body() != value:
            raise _bad("amend is not in canonical form (decimals as canonical strings, buckets with every key)")
        return amendment

    def to_body(self) -> dict[str, Any]:
        return {key: _thaw(value) for key, value in self.body.items()}

    def apply(self, rules: Rules) -> Rules:
        """The rules with this amendment applied; `bad_amendment` if they would not be valid rules."""
        body = rules.to_body()
        for key, value in self.body.items():
            if key == "rates":
                rates = dict(body["rates"])
                for rate_key, per_unit in value.items():
                    if per_unit:
                        rates[rate_key] = dict(per_unit)
                    else:
                        rates.pop(rate_key, None)
                body["rates"] = rates
            elif key in ("validation", "voting", "recovery"):
                body[key] = {**body.get(key, {}), **value}
            else:
                body[key] = _thaw(value)
        try:
            return Rules.from_body(body)
        except InvalidData as exc:
            raise _bad(f"the amended rules would be invalid: {exc.code}: {exc.message}") from None


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(v) for v in value]
    return value


def _decimal_text(value: object, path: str) -> str:
    return format_decimal(parse_decimal(value, path))


def _table(value: object, path: str, keys: frozenset[str] | None = None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _bad(f"{path}: expected a table")
    unknown = sorted(set(value) - keys) if keys is not None else []
    if unknown:
        raise _bad(f"{path}.{unknown[0]}: unknown key (known here: {', '.join(sorted(keys or ()))})")
    return value


def _norm_rates(value: object) -> dict[str, Any]:
    rates = _table(value, "rates")
    if not rates:
        raise _bad("rates: give at least one rate key")
    result: dict[str, Any] = {}
    for key, per in sorted(rates.items()):
        table = _table(per, f"rates.{key}")
        result[key] = {unit: _decimal_text(rate, f"rates.{key}.{unit}") for unit, rate in sorted(table.items())}
    return result


def _norm_units(value: object) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(u, str) for u in value):
        raise _bad("units: expected a list of unit names")
    return list(value)


def _norm_ints(value: object, path: str, keys: frozenset[str]) -> dict[str, Any]:
    table = _table(value, path, keys)
    if not table:
        raise _bad(f"{path}: give at least one of {', '.join(sorted(keys))}")
    result: dict[str, Any] = {}
    for key, item in sorted(table.items()):
        if key == "quorum":
            result[key] = _decimal_text(item, f"{path}.quorum")
        elif key == "blank" or (not isinstance(item, bool) and isinstance(item, int)):
            result[key] = item
        else:
            raise _bad(f"{path}.{key}: expected a whole number")
    return result


def _norm_buckets(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list | tuple) or not value:
        raise _bad("buckets: expected a non-empty list of tables")
    result = []
    for i, item in enumerate(value):
        table = _table(item, f"buckets[{i}]", _BUCKET_KEYS)
        if "name" not in table or "percent" not in table:
            raise _bad(f"buckets[{i}]: name and percent are required")
        bucket = Bucket(
            table["name"], parse_decimal(table["percent"], f"buckets[{i}].percent"), table.get("recipient"),
            table.get("mode", DEFAULT_MODE), table.get("claims", DEFAULT_CLAIMS), tuple(table.get("actions", ())),
        )
        result.append({
            "name": bucket.name, "percent": format_decimal(bucket.percent), "recipient": bucket.recipient,
            "mode": bucket.mode, "claims": bucket.claims, "actions": list(bucket.actions),
        })
    return result


def _norm_recovery(value: object) -> dict[str, Any]:
    table = _table(value, "recovery", frozenset({"quorum"}))
    quorum = table.get("quorum")
    if isinstance(quorum, bool) or not isinstance(quorum, int):
        raise _bad("recovery.quorum: expected a whole number")
    return {"quorum": quorum}


def _norm_bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _bad("log_for_others and pledge_claims are true or false")
    return value


_NORMALIZE: Final[Mapping[str, Any]] = MappingProxyType({
    "rates": _norm_rates,
    "units": _norm_units,
    "validation": lambda v: _norm_ints(v, "validation", _VALIDATION_KEYS),
    "voting": lambda v: _norm_ints(v, "voting", _VOTING_KEYS),
    "buckets": _norm_buckets,
    "log_for_others": _norm_bool,
    "pledge_claims": _norm_bool,  # version 2 rules only: applied to version 1 rules it is bad_amendment
    "recovery": _norm_recovery,  # version 2 rules only, likewise
    "timezone": lambda v: check_timezone(v, "timezone"),  # version 2 rules only, likewise
})
