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

Its parts live beside it: the decimals (protocol/decimals.py), the file's typed reads
(protocol/rules_file.py), the rates (protocol/rates.py) and the buckets (protocol/buckets.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from .buckets import Bucket, body_buckets, check_buckets, config_buckets
from .decimals import bounded_decimal, format_decimal
from .errors import InvalidData
from .kel import KeyLog
from .names import check_name, normalize
from .rates import DEFAULT_RATES, check_rates, read_rates
from .rules_file import (
    check_sorted,
    check_unique,
    read_bool,
    read_choice,
    read_did,
    read_int,
    read_list,
    read_table,
    read_text,
    refuse_floats,
    required,
)

VISIBILITIES: Final = ("members", "public")
BLANK_VOTES: Final = ("zero", "no-opinion")

MAX_NAME_CHARS: Final = 200  # a ledger's name (protocol/writes.py has the same bound)
MAX_PURPOSE_CHARS: Final = 2000
MAX_VALIDATORS: Final = 1_000_000  # bound on K and R
MAX_SCORE: Final = 100  # voting scores lie in 0..MAX_SCORE

UNIT_PATTERN: Final = re.compile(r"[a-z][a-z0-9_-]{0,31}")

DEFAULT_VISIBILITY: Final = "members"
DEFAULT_UNITS: Final = ("hour", "euro", "day")
DEFAULT_ACCEPT: Final = 1
DEFAULT_REJECT: Final = 1
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
_VOTING_KEYS: Final = frozenset({"min", "max", "blank", "quorum"})


# ---- the rules -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Validation:
    """A contribution is final when at least `accept` (K) members other than its author accept it
    and fewer than `reject` (R) reject it."""

    accept: int
    reject: int

    def __post_init__(self) -> None:
        read_int(self.accept, "validation.accept", 1, MAX_VALIDATORS)
        read_int(self.reject, "validation.reject", 1, MAX_VALIDATORS)


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
        read_int(self.min, "voting.min", 0, MAX_SCORE)
        read_int(self.max, "voting.max", 0, MAX_SCORE)
        if self.min >= self.max:
            raise InvalidData("bad_rules", f"voting.min: {self.min} must be below voting.max ({self.max})")
        read_choice(self.blank, "voting.blank", BLANK_VOTES)
        quorum = bounded_decimal(self.quorum, "voting.quorum", low=Decimal(0), high=Decimal(1))
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
        read_bool(self.pledge_claims, "pledge_claims")
        if self.recovery_quorum is not None:
            if self.version == 1:
                raise InvalidData("bad_rules", "recovery: version 1 rules have no recovery quorum")
            read_int(self.recovery_quorum, "recovery.quorum", 1, MAX_VALIDATORS)
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
        name = read_text(self.name, "name")
        if not name or name != name.strip() or len(name) > MAX_NAME_CHARS:
            raise InvalidData(
                "bad_rules", f"name: a ledger name has 1 to {MAX_NAME_CHARS} characters, without spaces at either end"
            )
        check_name(name, "name")
        if len(read_text(self.purpose, "purpose")) > MAX_PURPOSE_CHARS:
            raise InvalidData("bad_rules", f"purpose: longer than {MAX_PURPOSE_CHARS} characters")
        read_choice(self.visibility, "visibility", VISIBILITIES)
        read_bool(self.log_for_others, "log_for_others")
        if not isinstance(self.validation, Validation) or not isinstance(self.voting, Voting):
            raise InvalidData("bad_rules", "validation and voting must be Validation and Voting")
        object.__setattr__(self, "founders", _check_founders(self.founders))
        object.__setattr__(self, "units", _check_units(self.units))
        object.__setattr__(self, "rates", check_rates(self.rates, self.units))
        object.__setattr__(self, "buckets", check_buckets(self.buckets, self.version))

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
        refuse_floats(body, "")
        # `creator` (§19.9) is no key of a rules file: the node writes it, so only a genesis body has it.
        top = read_table(
            body, "", frozenset({*BODY_KEYS, "version", "pledge_claims", "recovery", "timezone", "creator"})
        )
        # A genesis without `version` is version 1 (written before versions existed); one with it says 2.
        version = read_int(top.get("version", 1), "version", 2, 2) if "version" in top else 1
        for key in sorted(BODY_KEYS | ({"version", "pledge_claims"} if version > 1 else set())):
            required(top, key, "")
        if version == 1 and "pledge_claims" in top:
            raise InvalidData("unknown_rule_key", "pledge_claims: unknown key in version 1 rules (no version key)")
        for optional in ("recovery", "timezone", "creator"):
            if version == 1 and optional in top:
                raise InvalidData("unknown_rule_key", f"{optional}: unknown key in version 1 rules (no version key)")
        recovery = read_table(top["recovery"], "recovery", _RECOVERY_KEYS) if "recovery" in top else None
        founders = [read_text(f, f"founders[{i}]") for i, f in enumerate(read_list(top["founders"], "founders"))]
        check_sorted(founders, "founders")
        validation = read_table(top["validation"], "validation", _VALIDATION_KEYS)
        rates = read_table(top["rates"], "rates")
        buckets = body_buckets(top["buckets"])
        voting = read_table(top["voting"], "voting", _VOTING_KEYS)
        return cls(
            name=read_text(top["name"], "name"),
            purpose=read_text(top["purpose"], "purpose"),
            visibility=read_choice(top["visibility"], "visibility", VISIBILITIES),
            founders=tuple(read_did(f, f"founders[{i}]") for i, f in enumerate(founders)),
            units=tuple(read_text(u, f"units[{i}]") for i, u in enumerate(read_list(top["units"], "units"))),
            validation=Validation(
                required(validation, "accept", "validation"), required(validation, "reject", "validation")
            ),
            rates=read_rates(rates, canonical=True),
            buckets=buckets,
            voting=Voting(
                required(voting, "min", "voting"), required(voting, "max", "voting"),
                required(voting, "blank", "voting"),
                bounded_decimal(required(voting, "quorum", "voting"), "voting.quorum", low=Decimal(0), canonical=True),
            ),
            log_for_others=read_bool(top["log_for_others"], "log_for_others"),
            version=version,
            pledge_claims=read_bool(top["pledge_claims"], "pledge_claims") if version > 1 else True,
            recovery_quorum=None if recovery is None else required(recovery, "quorum", "recovery"),
            timezone=read_text(top["timezone"], "timezone") if "timezone" in top else None,
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
        refuse_floats(config, "")
        top = read_table(config, "", _CONFIG_KEYS)
        visibility = read_choice(top.get("visibility", DEFAULT_VISIBILITY), "visibility", VISIBILITIES)
        founders = [read_did(f, f"founders[{i}]") for i, f in enumerate(read_list(top.get("founders", [creator]),
                                                                            "founders"))]
        check_unique(founders, "founders")
        if creator not in founders:
            raise InvalidData("bad_rules", f"founders: must include the ledger's creator, {creator}")
        validation = read_table(top.get("validation", {}), "validation", _VALIDATION_KEYS)
        rates = read_table(top.get("rates", DEFAULT_RATES), "rates")
        voting = read_table(top.get("voting", {}), "voting", _VOTING_KEYS)
        version = read_int(top.get("version", LATEST_VERSION), "version", 1, LATEST_VERSION)
        recovery = read_table(top["recovery"], "recovery", _RECOVERY_KEYS) if "recovery" in top else {}
        return cls(
            name=normalize(read_text(name, "name")),
            purpose=read_text(top.get("purpose", ""), "purpose"),
            visibility="public" if public else visibility,
            founders=tuple(sorted(founders)),
            units=tuple(read_text(u, f"units[{i}]") for i, u in enumerate(read_list(top.get("units", DEFAULT_UNITS),
                                                                              "units"))),
            validation=Validation(validation.get("accept", DEFAULT_ACCEPT), validation.get("reject", DEFAULT_REJECT)),
            rates=read_rates(rates, canonical=False),
            buckets=config_buckets(top.get("buckets")),
            voting=Voting(
                voting.get("min", DEFAULT_VOTING_MIN), voting.get("max", DEFAULT_VOTING_MAX),
                voting.get("blank", DEFAULT_BLANK),
                bounded_decimal(voting.get("quorum", DEFAULT_QUORUM), "voting.quorum", low=Decimal(0)),
            ),
            log_for_others=read_bool(top.get("log_for_others", False), "log_for_others"),
            version=version,
            pledge_claims=read_bool(top.get("pledge_claims", version == 1 or DEFAULT_PLEDGE_CLAIMS), "pledge_claims"),
            recovery_quorum=recovery.get("quorum"),
            timezone=read_text(top["timezone"], "timezone") if "timezone" in top else None,
            creator=proof,
        )


def check_timezone(value: object, path: str) -> str:
    """An IANA time zone name's spelling (`bad_rules`). Whether a node's tz database knows it is the node's
    concern (SPEC.md §14): validity must not depend on a machine's files."""
    if not isinstance(value, str) or len(value) > MAX_TIMEZONE_CHARS or not _TIMEZONE.fullmatch(value):
        raise InvalidData("bad_rules", f"{path}: an IANA time zone name such as \"Europe/Berlin\" or \"UTC\" "
                          f"(at most {MAX_TIMEZONE_CHARS} characters)")
    return value


def _check_founders(value: object) -> tuple[str, ...]:
    founders = [read_did(f, f"founders[{i}]") for i, f in enumerate(read_list(value, "founders"))]
    if not founders:
        raise InvalidData("bad_rules", "founders: a ledger has at least one founder")
    check_unique(founders, "founders")
    return tuple(sorted(founders))


def _check_units(value: object) -> tuple[str, ...]:
    units = [read_text(u, f"units[{i}]") for i, u in enumerate(read_list(value, "units"))]
    if not units:
        raise InvalidData("bad_rules", "units: a ledger has at least one unit")
    for i, unit in enumerate(units):
        if not UNIT_PATTERN.fullmatch(unit):
            raise InvalidData(
                "bad_rules", f"units[{i}]: {unit!r} must be a lower-case letter then up to 31 of a-z 0-9 _ -"
            )
    check_unique(units, "units")
    return tuple(units)
