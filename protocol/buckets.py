"""How a ledger splits income: its buckets (SPEC.md §14, §17).

Straight buckets take their percent of the whole, off the top; remaining buckets then share what the
straight ones leave. A bucket pays the ledger, one member, or the validated contributions of its actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from .decimals import bounded_decimal, exact, format_decimal
from .errors import InvalidData
from .identity import public_key_from_did
from .rates import read_action
from .rules_file import check_sorted, check_unique, kind_of, read_choice, read_list, read_table, read_text, required

BUCKET_MODES: Final = ("straight", "remaining")
CLAIM_KINDS: Final = ("equity", "debt", "once")
LEDGER_RECIPIENT: Final = "ledger"  # a bucket paid to the coop itself (the ledger's id)
MAX_BUCKET_NAME_CHARS: Final = 64
DEFAULT_BUCKET_NAME: Final = "members"
DEFAULT_MODE: Final = "straight"
DEFAULT_CLAIMS: Final = "equity"
_HUNDRED: Final = Decimal(100)
_BUCKET_KEYS: Final = frozenset({"name", "percent", "recipient", "mode", "claims", "actions"})


def _bucket_fields(
    name: object, percent: object, recipient: object, mode: object, claims: object, actions: object, path: str
) -> tuple[str, Decimal, str | None, str, str, tuple[str, ...]]:
    """One bucket's fields, checked and normalized; errors name `path` (e.g. `buckets[1]`)."""
    text = read_text(name, f"{path}.name")
    if not text or text != text.strip() or len(text) > MAX_BUCKET_NAME_CHARS or not text.isprintable():
        raise InvalidData(
            "bad_rules", f"{path}.name: {text!r} must have 1 to {MAX_BUCKET_NAME_CHARS} printable characters, "
            "without spaces at either end"
        )
    share = bounded_decimal(percent, f"{path}.percent", low=Decimal(0), high=_HUNDRED, low_open=True)
    target = None if recipient is None else _recipient(recipient, f"{path}.recipient")
    kinds = [read_action(a, f"{path}.actions[{i}]") for i, a in enumerate(read_list(actions, f"{path}.actions"))]
    check_unique(kinds, f"{path}.actions")
    return (
        text, share, target, read_choice(mode, f"{path}.mode", BUCKET_MODES),
        read_choice(claims, f"{path}.claims", CLAIM_KINDS), tuple(sorted(kinds)),
    )


def _recipient(value: object, path: str) -> str:
    """"ledger" or a did:key; `unknown_bucket_recipient` otherwise."""
    if value == LEDGER_RECIPIENT and isinstance(value, str):
        return value
    reason = f"got {kind_of(value)}"
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


def body_buckets(value: object) -> tuple[Bucket, ...]:
    """The buckets of a genesis body: every key present, percents canonical, actions sorted."""
    buckets = []
    for i, item in enumerate(read_list(value, "buckets")):
        path = f"buckets[{i}]"
        bucket = read_table(item, path, _BUCKET_KEYS)
        listed = read_list(required(bucket, "actions", path), f"{path}.actions")
        actions = [read_text(a, f"{path}.actions[{j}]") for j, a in enumerate(listed)]
        check_sorted(actions, f"{path}.actions")
        recipient = required(bucket, "recipient", path)
        buckets.append(Bucket(*_bucket_fields(
            required(bucket, "name", path),
            bounded_decimal(required(bucket, "percent", path), f"{path}.percent", low=Decimal(0), canonical=True),
            recipient, required(bucket, "mode", path), required(bucket, "claims", path), actions, path,
        )))
    return tuple(buckets)


def config_buckets(value: object) -> tuple[Bucket, ...]:
    if value is None:
        return (Bucket(DEFAULT_BUCKET_NAME, _HUNDRED, None, DEFAULT_MODE, DEFAULT_CLAIMS),)
    buckets = []
    for i, item in enumerate(read_list(value, "buckets")):
        path = f"buckets[{i}]"
        bucket = read_table(item, path, _BUCKET_KEYS)
        buckets.append(Bucket(*_bucket_fields(
            required(bucket, "name", path), required(bucket, "percent", path), bucket.get("recipient"),
            bucket.get("mode", DEFAULT_MODE), bucket.get("claims", DEFAULT_CLAIMS), bucket.get("actions", []), path,
        )))
    return tuple(buckets)


def check_buckets(value: object, version: int) -> tuple[Bucket, ...]:
    buckets = read_list(value, "buckets")
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
