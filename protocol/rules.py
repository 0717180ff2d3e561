"""A ledger's rules: the value equation and governance its genesis entry fixes.

`Rules` is what a ledger's members agreed on when they founded it: who the
founders are, the units, how many peers must accept a contribution (K) or may
reject it (R), the claim value of each action per unit (rates), how income is
split into buckets, and how score votes are counted. It is built from a TOML
file a coop writes by hand (`Rules.from_config`), stored as the genesis
payload (`to_body`), and read back strictly from it (`Rules.from_body`).
SPEC.md §14 specifies the genesis form; README.md "Ledger rules" the file.

Quantities are exact decimals, never floats: `"2.5"` or `25` in a file, always
the canonical string (`format_decimal`) in a genesis body. Every refusal is an
`InvalidData` whose message starts with the dotted key at fault, as the file
spells it: `validation.acept`, `rates."work:engineering".hour`, `buckets[1].percent`
(bucket indexes count from 0).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext
from types import MappingProxyType
from typing import Any, Final

from .errors import InvalidData
from .identity import public_key_from_did
from .kel import KeyLog
from .names import check_name, normalize

#: The 19 actions of ValueFlows 1.0 (vf:Action individuals in all_vf.TTL), spelled as VF spells them.
ACTIONS: Final[frozenset[str]] = frozenset({
    "accept", "cite", "combine", "consume", "copy", "deliverService", "dropoff", "lower", "modify", "move",
    "pickup", "produce", "raise", "separate", "transfer", "transferAllRights", "transferCustody", "use", "work",
})
VISIBILITIES: Final = ("members", "public")
BUCKET_MODES: Final = ("straight", "remaining")
CLAIM_KINDS: Final = ("equity", "debt", "once")
BLANK_VOTES: Final = ("zero", "no-opinion")
LEDGER_RECIPIENT: Final = "ledger"  # a bucket paid to the coop itself (the ledger's id)

MAX_DECIMAL_PLACES: Final = 18  # digits after the point
MAX_INTEGER_DIGITS: Final = 18  # digits before it, leading zeros aside
MAX_NAME_CHARS: Final = 200  # a ledger's name (protocol/writes.py has the same bound)
MAX_PURPOSE_CHARS: Final = 2000
MAX_BUCKET_NAME_CHARS: Final = 64
MAX_CLASSIFICATION_CHARS: Final = 128
MAX_VALIDATORS: Final = 1_000_000  # bound on K and R
MAX_SCORE: Final = 100  # voting scores lie in 0..MAX_SCORE
MAX_RULES_DEPTH: Final = 16  # rules nest 4 deep; anything deeper is refused before it is parsed or walked
MAX_RULES_TOML_CHARS: Final = 65536  # a rules file: four times what a genesis payload can hold

UNIT_PATTERN: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_CLASSIFICATION: Final = re.compile(rf"[^\s\x00-\x1f\x7f]{{1,{MAX_CLASSIFICATION_CHARS}}}")
_DECIMAL: Final = re.compile(r"-?([0-9]+)(?:\.([0-9]+))?")
_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")
_HUNDRED: Final = Decimal(100)
#: Precision of every exact computation (sums, products, dues): 4 × the 36 digits a quantity may have, far
#: above any figure the bounded inputs can reach (SPEC.md §1.1). Python's default of 28 would round.
EXACT_DIGITS: Final = 4 * (MAX_INTEGER_DIGITS + MAX_DECIMAL_PLACES)

DEFAULT_VISIBILITY: Final = "members"
DEFAULT_UNITS: Final = ("hour", "euro", "day")
DEFAULT_ACCEPT: Final = 1
DEFAULT_REJECT: Final = 1
DEFAULT_RATES: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType({
    "work": MappingProxyType({"hour": "1"}),
    "transfer": MappingProxyType({"euro": "1"}),
    "use": MappingProxyType({"day": "1"}),
})
DEFAULT_BUCKET_NAME: Final = "members"
DEFAULT_MODE: Final = "straight"
DEFAULT_CLAIMS: Final = "equity"
DEFAULT_VOTING_MIN: Final = 0
DEFAULT_VOTING_MAX: Final = 5
DEFAULT_BLANK: Final = "zero"
DEFAULT_QUORUM: Final = "0.5"
#: Rules versions (SPEC.md §14): 1 is a genesis without `version`; 2 adds `pledge_claims`, mixed bucket modes and
#: the accounting and tie rules of §17 and §18. New ledgers are version 2; a version 1 ledger keeps its rules.
RULES_VERSIONS: Final = (1, 2)
LATEST_VERSION: Final = 2
DEFAULT_PLEDGE_CLAIMS: Final = False  # version 2: payments of a pledge are solidarity, they earn no claim

_CONFIG_KEYS: Final = frozenset({
    "visibility", "purpose", "founders", "units", "validation", "rates", "buckets", "voting", "log_for_others",
    "version", "pledge_claims", "recovery", "timezone",
})
#: The keys every genesis body has; a version 2 body also has `version` and `pledge_claims`, and may have
#: `recovery` (absent: the recovery quorum is the admission quorum, `validation.accept`).
BODY_KEYS: Final = frozenset({"name", *_CONFIG_KEYS} - {"version", "pledge_claims", "recovery", "timezone"})
_RECOVERY_KEYS: Final = frozenset({"quorum"})
MAX_TIMEZONE_CHARS: Final = 64
#: An IANA time zone name as the tz database spells them ("UTC", "Europe/Berlin",
#: "America/Argentina/Buenos_Aires"): letters, digits, "_", "+" and "-" in up to three parts.
_TIMEZONE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+){0,2}")
_VALIDATION_KEYS: Final = frozenset({"accept", "reject"})
_BUCKET_KEYS: Final = frozenset({"name", "percent", "recipient", "mode", "claims", "actions"})
_VOTING_KEYS: Final = frozenset({"min", "max", "blank", "quorum"})


# ---- decimals ------------------------------------------------------------------


def parse_decimal(value: object, what: str) -> Decimal:
    """An exact decimal from a string like `"2.5"`, an int or a finite Decimal; `bad_quantity` otherwise.

    Never a float or a bool. Strings are `-?digits(.digits)?`: no exponent, no
    sign `+`, no spaces, at most 18 digits after the point and 18 before it.
    The result is canonical (`Decimal("2.5")` for `"2.50"`). `what` names the key.
    """
    if type(value) is str:  # a str subclass is parsed, not looked up
        found = _PARSED.get(value)
        if found is not None:
            return found
    if isinstance(value, bool | float) or not isinstance(value, str | int | Decimal):
        raise InvalidData(
            "bad_quantity", f"{what}: {value!r} is not an exact decimal; write decimals as strings, e.g. \"2.5\""
        )
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidData("bad_quantity", f"{what}: {value} is not a finite decimal")
        text = format_decimal(value)
    else:
        text = str(value)
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise InvalidData(
            "bad_quantity", f"{what}: {value!r} is not a decimal like \"2.5\" (digits, an optional point and "
            "digits; no exponent, no spaces)"
        )
    integer, fraction = match.group(1), match.group(2) or ""
    if len(fraction) > MAX_DECIMAL_PLACES or len(integer.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise InvalidData(
            "bad_quantity", f"{what}: {value!r} has more than {MAX_INTEGER_DIGITS} digits before the point or "
            f"{MAX_DECIMAL_PLACES} after it"
        )
    parsed = Decimal(format_decimal(Decimal(text)))
    if type(value) is str and len(_PARSED) < _PARSED_KEPT:
        _PARSED[value] = parsed
    return parsed


#: Decimal strings parsed before, each with its (immutable) decimal: a ledger's quantities repeat ("1", "2.5"),
#: and a fold keeps one decimal of each then, not one per event; bounded, so any text cannot fill it.
_PARSED: Final[dict[str, Decimal]] = {}
_PARSED_KEPT: Final = 4096


def exact() -> AbstractContextManager[Context]:
    """A Decimal context of EXACT_DIGITS that traps rounding: a figure SPEC calls exact never loses a digit
    silently (the bounds on inputs keep every figure far below this precision)."""
    return localcontext(Context(prec=EXACT_DIGITS, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow]))


def format_decimal(d: Decimal) -> str:
    """The canonical string of a finite decimal: no exponent, no trailing zeros after the point, no `-0`."""
    if not d.is_finite():
        raise ValueError(f"{d} is not a finite decimal")
    if d.is_zero():
        return "0"
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _quantity(value: object, what: str, *, low: Decimal, high: Decimal | None = None, low_open: bool = False,
              canonical: bool = False) -> Decimal:
    """A decimal within [low, high] (or (low, high] when low_open); canonical: only its canonical string."""
    if canonical and not isinstance(value, str):
        raise InvalidData("bad_quantity", f"{what}: {value!r} must be a decimal string, e.g. \"2.5\"")
    d = parse_decimal(value, what)
    if canonical and format_decimal(d) != value:
        raise InvalidData("bad_quantity", f"{what}: {value!r} is not in canonical form ({format_decimal(d)!r})")
    if d < low or (low_open and d == low) or (high is not None and d > high):
        bounds = f"{'(' if low_open else '['}{format_decimal(low)}, {'…' if high is None else format_decimal(high)}]"
        raise InvalidData("bad_quantity", f"{what}: {format_decimal(d)} is outside {bounds}")
    return d


# ---- the TOML file ------------------------------------------------------------------


def parse_rules_toml(text: str) -> dict[str, Any]:
    """A rules (or amendment) TOML text as a table; `bad_rules` when too long, nested deeper than
    MAX_RULES_DEPTH (checked before parsing: the parser recurses once per level) or not TOML."""
    if len(text) > MAX_RULES_TOML_CHARS:
        raise InvalidData("bad_rules", f"the rules file has more than {MAX_RULES_TOML_CHARS} characters")
    if _toml_depth(text) > MAX_RULES_DEPTH:
        raise InvalidData("bad_rules", f"the rules nest arrays or inline tables more than {MAX_RULES_DEPTH} deep")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidData("bad_rules", f"not TOML: {exc}") from None
    except RecursionError:  # unreachable after the depth check; kept so no input can crash a caller
        raise InvalidData("bad_rules", "the rules nest too deeply") from None


def _toml_depth(text: str) -> int:
    """The deepest nesting of `[` and `{` outside strings and comments (table headers count as 1)."""
    depth = deepest = i = 0
    while i < len(text):
        c = text[i]
        if c in "\"'":
            quote = text[i:i + 3] if text[i:i + 3] in ('"""', "'''") else c
            i += len(quote)
            while i < len(text) and not text.startswith(quote, i):
                i += 2 if c == '"' and text[i] == "\\" else 1
            i += len(quote)
            continue
        if c == "#":
            while i < len(text) and text[i] != "\n":
                i += 1
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest


# ---- typed reads, each naming its key ---------------------------------------------


def _key(path: str, key: object) -> str:
    """`path.key`, with the key quoted as TOML would when it is not a bare key."""
    text = str(key)
    part = text if _BARE_KEY.fullmatch(text) else json.dumps(text, ensure_ascii=False)
    return f"{path}.{part}" if path else part


def _where(path: str) -> str:
    return path or "the rules"


def _refuse_floats(value: object, path: str, depth: int = 0) -> None:
    """Floats anywhere are `bad_quantity`, named by key, before any other check."""
    if depth > MAX_RULES_DEPTH:
        raise InvalidData("bad_rules", f"{_where(path)}: nested too deeply")
    if isinstance(value, float):
        raise InvalidData(
            "bad_quantity", f"{_where(path)}: {value!r} is a float; write decimals as strings, e.g. \"2.5\""
        )
    if isinstance(value, Mapping):
        for k, v in value.items():
            _refuse_floats(v, _key(path, k), depth + 1)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _refuse_floats(v, f"{path}[{i}]", depth + 1)


def _table(value: object, path: str, known: frozenset[str] | None = None) -> Mapping[str, Any]:
    """A table with text keys, all of them in `known` (any key when None)."""
    if not isinstance(value, Mapping):
        raise InvalidData("bad_rules", f"{_where(path)}: expected a table, got {_kind(value)}")
    for k in value:
        if not isinstance(k, str):
            raise InvalidData("bad_rules", f"{_where(path)}: key {k!r} is not text")
    unknown = [] if known is None else sorted(set(value) - known)
    if known is not None and unknown:
        raise InvalidData(
            "unknown_rule_key", f"{_key(path, unknown[0])}: unknown key (known here: {', '.join(sorted(known))})"
        )
    return value


def _required(table: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in table:
        raise InvalidData("bad_rules", f"{_key(path, key)}: required")
    return table[key]


def _text(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise InvalidData("bad_rules", f"{path}: expected text, got {_kind(value)}")
    return value


def _int(value: object, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidData("bad_rules", f"{path}: expected a whole number, got {_kind(value)}")
    if not low <= value <= high:
        raise InvalidData("bad_rules", f"{path}: {value} is outside {low}..{high}")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidData("bad_rules", f"{path}: expected true or false, got {_kind(value)}")
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise InvalidData("bad_rules", f"{path}: expected a list, got {_kind(value)}")
    return list(value)


def _choice(value: object, path: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidData("bad_rules", f"{path}: {value!r} is not one of {', '.join(choices)}")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    return {
        int: "a whole number", str: "text", list: "a list", tuple: "a list", dict: "a table",
    }.get(type(value), type(value).__name__)


def _did(value: object, path: str) -> str:
    did = _text(value, path)
    try:
        public_key_from_did(did)
    except InvalidData as exc:
        raise InvalidData("bad_did", f"{path}: {exc.message}") from None
    return did


def _action(value: object, path: str) -> str:
    action = _text(value, path)
    if action not in ACTIONS:
        raise InvalidData(
            "unknown_action", f"{path}: {action!r} is not a ValueFlows action (one of {', '.join(sorted(ACTIONS))})"
        )
    return action


def _unique(values: Iterable[str], path: str) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        if value in seen:
            raise InvalidData("bad_rules", f"{path}[{i}]: {value!r} is listed twice")
        seen.add(value)


def _sorted(values: list[str], path: str) -> None:
    """Genesis bodies hold sets as sorted lists (one encoding per rule set)."""
    if values != sorted(values):
        raise InvalidData("bad_rules", f"{path}: must be sorted (one encoding per rule set)")


# ---- the rules -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Validation:
    """A contribution is final when at least `accept` (K) members other than its author accept it
    and fewer than `reject` (R) reject it."""

    accept: int
    reject: int

    def __post_init__(self) -> None:
        _int(self.accept, "validation.accept", 1, MAX_VALIDATORS)
        _int(self.reject, "validation.reject", 1, MAX_VALIDATORS)


def _bucket_fields(
    name: object, percent: object, recipient: object, mode: object, claims: object, actions: object, path: str
) -> tuple[str, Decimal, str | None, str, str, tuple[str, ...]]:
    """One bucket's fields, checked and normalized; errors name `path` (e.g. `buckets[1]`)."""
    text = _text(name, f"{path}.name")
    if not text or text != text.strip() or len(text) > MAX_BUCKET_NAME_CHARS or not text.isprintable():
        raise InvalidData(
            "bad_rules", f"{path}.name: {text!r} must have 1 to {MAX_BUCKET_NAME_CHARS} printable characters, "
            "without spaces at either end"
        )
    share = _quantity(percent, f"{path}.percent", low=Decimal(0), high=_HUNDRED, low_open=True)
    target = None if recipient is None else _recipient(recipient, f"{path}.recipient")
    kinds = [_action(a, f"{path}.actions[{i}]") for i, a in enumerate(_list(actions, f"{path}.actions"))]
    _unique(kinds, f"{path}.actions")
    return (
        text, share, target, _choice(mode, f"{path}.mode", BUCKET_MODES),
        _choice(claims, f"{path}.claims", CLAIM_KINDS), tuple(sorted(kinds)),
    )


def _recipient(value: object, path: str) -> str:
    """"ledger" or a did:key; `unknown_bucket_recipient` otherwise."""
    if value == LEDGER_RECIPIENT and isinstance(value, str):
        return value
    reason = f"got {_kind(value)}"
    if isinstance(value, str):
        try:
            public_key_from_did(value)
            return value
        except InvalidData as exc:
            reason = exc.message
    raise InvalidData(
        "unknown_bucket_recipient", f"{path}: {value!r} is neither \"ledger\" nor a did:key ({reason})"
    )


@dataclass(frozen=True, slots=True)
class Bucket:
    """A share of income: `percent` of the whole (straight) or of what earlier buckets left (remaining).

    `recipient` is "ledger" (the coop itself), a did:key, or None: shared among the
    validated contributions, in proportion to their claim values, of the actions in
    `actions` (every action when empty). `claims` says how those claims behave:
    equity (share in every distribution), debt (paid until paid off) or once.
    """

    name: str
    percent: Decimal
    recipient: str | None
    mode: str
    claims: str
    actions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        fields = _bucket_fields(self.name, self.percent, self.recipient, self.mode, self.claims, self.actions, "bucket")
        object.__setattr__(self, "percent", fields[1])
        object.__setattr__(self, "actions", fields[5])


@dataclass(frozen=True, slots=True)
class Voting:
    """Score voting: each ballot scores each option from `min` to `max`.

    A blank counts as `min` ("zero") or is left out of that option ("no-opinion");
    `quorum` is the share of ballots (0..1) that must score an option.
    """

    min: int
    max: int
    blank: str
    quorum: Decimal

    def __post_init__(self) -> None:
        _int(self.min, "voting.min", 0, MAX_SCORE)
        _int(self.max, "voting.max", 0, MAX_SCORE)
        if self.min >= self.max:
            raise InvalidData("bad_rules", f"voting.min: {self.min} must be below voting.max ({self.max})")
        _choice(self.blank, "voting.blank", BLANK_VOTES)
        quorum = _quantity(self.quorum, "voting.quorum", low=Decimal(0), high=Decimal(1))
        object.__setattr__(self, "quorum", quorum)


@dataclass(frozen=True, slots=True)
class Rules:
    """A ledger's rules, valid by construction. See the module docstring and SPEC.md §14."""

    name: str
    purpose: str
    visibility: str
    founders: tuple[str, ...]
    units: tuple[str, ...]
    validation: Validation
    rates: Mapping[str, Mapping[str, Decimal]]
    buckets: tuple[Bucket, ...]
    voting: Voting
    log_for_others: bool
    version: int = LATEST_VERSION
    #: do payments of a pledge (§18.5) earn claim values; version 1 ledgers: always
    pledge_claims: bool = DEFAULT_PLEDGE_CLAIMS
    #: how many other members approve a recovery (SPEC.md §19.5); None: `validation.accept`
    recovery_quorum: int | None = None
    #: the founder whose later key wrote the genesis, and the key log that proves it (SPEC.md §19.9)
    creator: KeyLog | None = None
    #: the IANA time zone the ledger's dates and times are shown in (SPEC.md §14); None: UTC. It changes no
    #: validity and no computation: days of payments and distributions stay UTC days
    timezone: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or self.version not in RULES_VERSIONS:
            raise InvalidData("bad_rules", f"version: {self.version!r} is not one of 1, 2")
        _bool(self.pledge_claims, "pledge_claims")
        if self.recovery_quorum is not None:
            if self.version == 1:
                raise InvalidData("bad_rules", "recovery: version 1 rules have no recovery quorum")
            _int(self.recovery_quorum, "recovery.quorum", 1, MAX_VALIDATORS)
        if self.timezone is not None:
            if self.version == 1:
                raise InvalidData("bad_rules", "timezone: version 1 rules have no time zone")
            check_timezone(self.timezone, "timezone")
        if self.creator is not None:
            if self.version == 1:
                raise InvalidData("bad_rules", "creator: version 1 rules have no creator")
            if self.creator.identity not in self.founders:
                raise InvalidData("bad_rules", f"creator: {self.creator.identity} is not a founder")
        if self.version == 1 and not self.pledge_claims:
            raise InvalidData("bad_rules", "pledge_claims: version 1 rules have no pledge_claims (payments earn "
                              "claims)")
        name = _text(self.name, "name")
        if not name or name != name.strip() or len(name) > MAX_NAME_CHARS:
            raise InvalidData(
                "bad_rules", f"name: a ledger name has 1 to {MAX_NAME_CHARS} characters, without spaces at either end"
            )
        check_name(name, "name")
        if len(_text(self.purpose, "purpose")) > MAX_PURPOSE_CHARS:
            raise InvalidData("bad_rules", f"purpose: longer than {MAX_PURPOSE_CHARS} characters")
        _choice(self.visibility, "visibility", VISIBILITIES)
        _bool(self.log_for_others, "log_for_others")
        if not isinstance(self.validation, Validation) or not isinstance(self.voting, Voting):
            raise InvalidData("bad_rules", "validation and voting must be Validation and Voting")
        object.__setattr__(self, "founders", _check_founders(self.founders))
        object.__setattr__(self, "units", _check_units(self.units))
        object.__setattr__(self, "rates", _check_rates(self.rates, self.units))
        object.__setattr__(self, "buckets", _check_buckets(self.buckets, self.version))

    @property
    def recovery(self) -> int:
        """How many members other than the identity must approve its recovery (SPEC.md §19.5)."""
        return self.validation.accept if self.recovery_quorum is None else self.recovery_quorum

    def rate(self, action: str, classification: str | None, unit: str) -> Decimal | None:
        """The claim value of one `unit` of `action`: `action:classification`'s rate beats the action's own
        (per unit); None if neither has a rate in that unit."""
        if classification is not None:
            specific = self.rates.get(f"{action}:{classification}")
            if specific is not None and unit in specific:
                return specific[unit]
        general = self.rates.get(action)
        return None if general is None else general.get(unit)

    def to_body(self) -> dict[str, Any]:
        """The genesis payload (SPEC.md §14): every key present, decimals as canonical strings."""
        return {
            "name": self.name,
            "visibility": self.visibility,
            "purpose": self.purpose,
            "founders": list(self.founders),
            "units": list(self.units),
            "validation": {"accept": self.validation.accept, "reject": self.validation.reject},
            "rates": {
                key: {unit: format_decimal(value) for unit, value in per_unit.items()}
                for key, per_unit in self.rates.items()
            },
            "buckets": [
                {
                    "name": b.name, "percent": format_decimal(b.percent), "recipient": b.recipient,
                    "mode": b.mode, "claims": b.claims, "actions": list(b.actions),
                }
                for b in self.buckets
            ],
            "voting": {
                "min": self.voting.min, "max": self.voting.max, "blank": self.voting.blank,
                "quorum": format_decimal(self.voting.quorum),
            },
            "log_for_others": self.log_for_others,
            **({} if self.version == 1 else {"version": self.version, "pledge_claims": self.pledge_claims}),
            # Written only when set, so a ledger without one keeps the id it would have had before.
            **({} if self.recovery_quorum is None else {"recovery": {"quorum": self.recovery_quorum}}),
            **({} if self.timezone is None else {"timezone": self.timezone}),
            **({} if self.creator is None else {"creator": self.creator.to_body()}),
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Rules:
        """Strictly read a genesis payload: every key `to_body` writes, nothing else, canonical forms only."""
        _refuse_floats(body, "")
        # `creator` (§19.9) is no key of a rules file: the node writes it, so only a genesis body has it.
        top = _table(body, "", frozenset({*BODY_KEYS, "version", "pledge_claims", "recovery", "timezone", "creator"}))
        # A genesis without `version` is version 1 (written before versions existed); one with it says 2.
        version = _int(top.get("version", 1), "version", 2, 2) if "version" in top else 1
        for key in sorted(BODY_KEYS | ({"version", "pledge_claims"} if version > 1 else set())):
            _required(top, key, "")
        if version == 1 and "pledge_claims" in top:
            raise InvalidData("unknown_rule_key", "pledge_claims: unknown key in version 1 rules (no version key)")
        for optional in ("recovery", "timezone", "creator"):
            if version == 1 and optional in top:
                raise InvalidData("unknown_rule_key", f"{optional}: unknown key in version 1 rules (no version key)")
        recovery = _table(top["recovery"], "recovery", _RECOVERY_KEYS) if "recovery" in top else None
        founders = [_text(f, f"founders[{i}]") for i, f in enumerate(_list(top["founders"], "founders"))]
        _sorted(founders, "founders")
        validation = _table(top["validation"], "validation", _VALIDATION_KEYS)
        rates = _table(top["rates"], "rates")
        buckets = []
        for i, value in enumerate(_list(top["buckets"], "buckets")):
            path = f"buckets[{i}]"
            bucket = _table(value, path, _BUCKET_KEYS)
            actions = [_text(a, f"{path}.actions[{j}]") for j, a in enumerate(_list(_required(bucket, "actions", path),
                                                                                  f"{path}.actions"))]
            _sorted(actions, f"{path}.actions")
            recipient = _required(bucket, "recipient", path)
            buckets.append(Bucket(*_bucket_fields(
                _required(bucket, "name", path),
                _quantity(_required(bucket, "percent", path), f"{path}.percent", low=Decimal(0), canonical=True),
                recipient, _required(bucket, "mode", path), _required(bucket, "claims", path), actions, path,
            )))
        voting = _table(top["voting"], "voting", _VOTING_KEYS)
        return cls(
            name=_text(top["name"], "name"),
            purpose=_text(top["purpose"], "purpose"),
            visibility=_choice(top["visibility"], "visibility", VISIBILITIES),
            founders=tuple(_did(f, f"founders[{i}]") for i, f in enumerate(founders)),
            units=tuple(_text(u, f"units[{i}]") for i, u in enumerate(_list(top["units"], "units"))),
            validation=Validation(
                _required(validation, "accept", "validation"), _required(validation, "reject", "validation")
            ),
            rates=_read_rates(rates, canonical=True),
            buckets=tuple(buckets),
            voting=Voting(
                _required(voting, "min", "voting"), _required(voting, "max", "voting"),
                _required(voting, "blank", "voting"),
                _quantity(_required(voting, "quorum", "voting"), "voting.quorum", low=Decimal(0), canonical=True),
            ),
            log_for_others=_bool(top["log_for_others"], "log_for_others"),
            version=version,
            pledge_claims=_bool(top["pledge_claims"], "pledge_claims") if version > 1 else True,
            recovery_quorum=None if recovery is None else _required(recovery, "quorum", "recovery"),
            timezone=_text(top["timezone"], "timezone") if "timezone" in top else None,
            creator=KeyLog.from_body(top["creator"]) if "creator" in top else None,
        )

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, name: str, creator: str, public: bool = False,
        proof: KeyLog | None = None,
    ) -> Rules:
        """Rules from a parsed TOML file (or its JSON twin, or {} for every default).

        `public=True` makes the ledger public whatever the file says (the --public
        shortcut). `founders` defaults to `[creator]` and must include the creator. `proof`: the creator's key
        log, when a later key of theirs writes the genesis (SPEC.md §19.9).
        """
        _refuse_floats(config, "")
        top = _table(config, "", _CONFIG_KEYS)
        visibility = _choice(top.get("visibility", DEFAULT_VISIBILITY), "visibility", VISIBILITIES)
        founders = [_did(f, f"founders[{i}]") for i, f in enumerate(_list(top.get("founders", [creator]),
                                                                            "founders"))]
        _unique(founders, "founders")
        if creator not in founders:
            raise InvalidData("bad_rules", f"founders: must include the ledger's creator, {creator}")
        validation = _table(top.get("validation", {}), "validation", _VALIDATION_KEYS)
        rates = _table(top.get("rates", DEFAULT_RATES), "rates")
        voting = _table(top.get("voting", {}), "voting", _VOTING_KEYS)
        version = _int(top.get("version", LATEST_VERSION), "version", 1, LATEST_VERSION)
        recovery = _table(top["recovery"], "recovery", _RECOVERY_KEYS) if "recovery" in top else {}
        return cls(
            name=normalize(_text(name, "name")),
            purpose=_text(top.get("purpose", ""), "purpose"),
            visibility="public" if public else visibility,
            founders=tuple(sorted(founders)),
            units=tuple(_text(u, f"units[{i}]") for i, u in enumerate(_list(top.get("units", DEFAULT_UNITS),
                                                                              "units"))),
            validation=Validation(validation.get("accept", DEFAULT_ACCEPT), validation.get("reject", DEFAULT_REJECT)),
            rates=_read_rates(rates, canonical=False),
            buckets=_config_buckets(top.get("buckets")),
            voting=Voting(
                voting.get("min", DEFAULT_VOTING_MIN), voting.get("max", DEFAULT_VOTING_MAX),
                voting.get("blank", DEFAULT_BLANK),
                _quantity(voting.get("quorum", DEFAULT_QUORUM), "voting.quorum", low=Decimal(0)),
            ),
            log_for_others=_bool(top.get("log_for_others", False), "log_for_others"),
            version=version,
            pledge_claims=_bool(top.get("pledge_claims", version == 1 or DEFAULT_PLEDGE_CLAIMS), "pledge_claims"),
            recovery_quorum=recovery.get("quorum"),
            timezone=_text(top["timezone"], "timezone") if "timezone" in top else None,
            creator=proof,
        )


def check_timezone(value: object, path: str) -> str:
    """An IANA time zone name's spelling (`bad_rules`). Whether a node's tz database knows it is the node's
    concern (SPEC.md §14): validity must not depend on a machine's files."""
    if not isinstance(value, str) or len(value) > MAX_TIMEZONE_CHARS or not _TIMEZONE.fullmatch(value):
        raise InvalidData("bad_rules", f"{path}: an IANA time zone name such as \"Europe/Berlin\" or \"UTC\" "
                          f"(at most {MAX_TIMEZONE_CHARS} characters)")
    return value


def _read_rates(rates: Mapping[str, Any], *, canonical: bool) -> dict[str, dict[str, Decimal]]:
    """Decimals of `rates` (keys checked by Rules); canonical: only canonical strings (genesis bodies)."""
    result: dict[str, dict[str, Decimal]] = {}
    for key, per_unit in rates.items():
        path = _key("rates", key)
        table = _table(per_unit, path)
        result[key] = {
            unit: _quantity(value, _key(path, unit), low=Decimal(0), canonical=canonical)
            for unit, value in table.items()
        }
    return result


def _config_buckets(value: object) -> tuple[Bucket, ...]:
    if value is None:
        return (Bucket(DEFAULT_BUCKET_NAME, _HUNDRED, None, DEFAULT_MODE, DEFAULT_CLAIMS),)
    buckets = []
    for i, item in enumerate(_list(value, "buckets")):
        path = f"buckets[{i}]"
        bucket = _table(item, path, _BUCKET_KEYS)
        buckets.append(Bucket(*_bucket_fields(
            _required(bucket, "name", path), _required(bucket, "percent", path), bucket.get("recipient"),
            bucket.get("mode", DEFAULT_MODE), bucket.get("claims", DEFAULT_CLAIMS), bucket.get("actions", []), path,
        )))
    return tuple(buckets)


def _check_founders(value: object) -> tuple[str, ...]:
    founders = [_did(f, f"founders[{i}]") for i, f in enumerate(_list(value, "founders"))]
    if not founders:
        raise InvalidData("bad_rules", "founders: a ledger has at least one founder")
    _unique(founders, "founders")
    return tuple(sorted(founders))


def _check_units(value: object) -> tuple[str, ...]:
    units = [_text(u, f"units[{i}]") for i, u in enumerate(_list(value, "units"))]
    if not units:
        raise InvalidData("bad_rules", "units: a ledger has at least one unit")
    for i, unit in enumerate(units):
        if not UNIT_PATTERN.fullmatch(unit):
            raise InvalidData(
                "bad_rules", f"units[{i}]: {unit!r} must be a lower-case letter then up to 31 of a-z 0-9 _ -"
            )
    _unique(units, "units")
    return tuple(units)


def _check_rates(value: object, units: tuple[str, ...]) -> Mapping[str, Mapping[str, Decimal]]:
    if not isinstance(value, Mapping):
        raise InvalidData("bad_rules", f"rates: expected a table, got {_kind(value)}")
    result: dict[str, Mapping[str, Decimal]] = {}
    for key in sorted(value, key=str):
        path = _key("rates", key)
        action, colon, classification = _text(key, f"rates: key {key!r}").partition(":")
        _action(action, path)
        if colon and not _CLASSIFICATION.fullmatch(classification):
            raise InvalidData(
                "bad_rules", f"{path}: the classification after \"{action}:\" has 1 to {MAX_CLASSIFICATION_CHARS} "
                "characters and no spaces"
            )
        per_unit = value[key]
        if not isinstance(per_unit, Mapping):
            raise InvalidData("bad_rules", f"{path}: expected a table of unit = rate, got {_kind(per_unit)}")
        if not per_unit:
            raise InvalidData("bad_rules", f"{path}: has no rate; give at least one unit = rate")
        rates: dict[str, Decimal] = {}
        for unit in sorted(per_unit, key=str):
            if unit not in units:
                raise InvalidData(
                    "unknown_unit", f"{_key(path, unit)}: {unit!r} is not one of the units ({', '.join(units)})"
                )
            rates[unit] = _quantity(per_unit[unit], _key(path, unit), low=Decimal(0))
        result[key] = MappingProxyType(rates)
    return MappingProxyType(result)


def _check_buckets(value: object, version: int = LATEST_VERSION) -> tuple[Bucket, ...]:
    buckets = _list(value, "buckets")
    if not buckets:
        raise InvalidData("bad_rules", "buckets: a ledger has at least one bucket")
    for i, bucket in enumerate(buckets):
        if not isinstance(bucket, Bucket):
            raise InvalidData("bad_rules", f"buckets[{i}]: expected a Bucket")
    names: set[str] = set()
    for i, bucket in enumerate(buckets):
        if bucket.name in names:
            raise InvalidData("bad_rules", f"buckets[{i}].name: {bucket.name!r} is the name of an earlier bucket")
        names.add(bucket.name)
    mode = buckets[0].mode
    for i, bucket in enumerate(buckets):
        if version == 1 and bucket.mode != mode:
            raise InvalidData(
                "bad_rules", f"buckets[{i}].mode: {bucket.mode!r} differs from buckets[0].mode {mode!r}; every "
                "bucket of a version 1 ledger uses the same mode"
            )
        # Version 2 mixes modes: straight buckets off the top, then remaining ones share what they leave.
        if bucket.mode == "straight" and i and buckets[i - 1].mode == "remaining":
            raise InvalidData(
                "bad_rules", f"buckets[{i}].mode: a straight bucket comes before every remaining bucket"
            )
    with exact():
        total = sum((b.percent for b in buckets if b.mode == "straight"), Decimal(0))
    if buckets[-1].mode == "straight":
        if total != _HUNDRED:
            raise InvalidData(
                "bad_rules", f"buckets: the percents of straight buckets sum to {format_decimal(total)}, not 100"
            )
        return tuple(buckets)
    if total >= _HUNDRED:
        raise InvalidData(
            "bad_rules", f"buckets: the percents of straight buckets sum to {format_decimal(total)}, leaving "
            "nothing for the remaining buckets after them"
        )
    if buckets[-1].percent != _HUNDRED:
        raise InvalidData(
            "bad_rules", f"buckets[{len(buckets) - 1}].percent: the last remaining bucket takes 100 percent of "
            f"what is left, not {format_decimal(buckets[-1].percent)}"
        )
    return tuple(buckets)
