"""Monthly budgets: the model, the user's local period, thresholds, the state, and the alert event.

A budget is per user: a monthly limit in USD (stored as nano-USD), counted in the user's IANA
timezone — the period is the local calendar month, reset at local midnight of the 1st — with
alert thresholds in percent (default 50/80/100) and an action once 100% is reached:

- `notify`: alerts only; calls go on.
- `block`: the library refuses calls (`BudgetExceededError`) until the next period or a higher limit.
- `switch`: the library sends calls to a cheaper configured provider/model (`switch_to`).

`strict` makes the library reserve each call's worst-case cost before it runs (see
`llmtally.providers.budget`), so concurrent callers cannot overshoot the limit — on the tenant's
budget and on tag budgets alike.

Pure domain code: storage is `llmtally.repositories.budgets`, evaluation after rollup commits is
`llmtally.budget_alerts`. See docs/budgets.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llmtally.errors import LLMTallyError
from llmtally.events import (
    EVENT_SOURCE,
    OTHER_TAG_VALUE,
    TAG_KEY_PATTERN,
    TAG_VALUE_PATTERN,
    Provider,
    format_timestamp,
)
from llmtally.money import format_usd, nanos_to_usd

#: EventBridge detail-type of an alert (source `llmtally`, on the usage bus).
ALERT_DETAIL_TYPE: Final = "BudgetThresholdCrossed"
ALERT_SOURCE: Final = EVENT_SOURCE
DEFAULT_THRESHOLDS: Final = (50, 80, 100)
#: The percentage at which the budget's action applies.
ENFORCED_PERCENT: Final = 100
MAX_THRESHOLDS: Final = 10
MAX_THRESHOLD_PERCENT: Final = 1000
#: $1,000,000 a month: a typo guard, not a business rule.
MAX_LIMIT_NANOS: Final = 1_000_000 * 10**9
_PERCENT_QUANTUM: Final = Decimal("0.1")
#: Metadata a strict call's usage event carries: the ledger period its settled cost is outstanding
#: in. The aggregator releases the event's reported cost from that ledger when it brings the event
#: into the rollups.
STRICT_PERIOD_METADATA: Final = "llmtally_budget_period"
#: Tag budgets a tenant may keep (each is read by the aggregator for every batch with that tag).
MAX_TAG_BUDGETS: Final = 20
#: Metadata a call held by strict tag budgets carries: `{hold id}@{epoch seconds it was reserved}`.
#: The id names the call's hold on every strict tag budget's ledger (one id for all of them); the
#: instant gives each ledger's period in its budget's timezone. The aggregator releases those holds
#: once it has rolled the event up (docs/budgets.md, "Strict tag budgets").
TAG_HOLD_METADATA: Final = "llmtally_tag_hold"
_HOLD_ID_CHARS: Final = frozenset("0123456789abcdef")


def format_tag_hold(hold_id: str, reserved_at: int) -> str:
    """`TAG_HOLD_METADATA`'s value."""
    return f"{hold_id}@{reserved_at}"


def parse_tag_hold(text: object) -> tuple[str, int] | None:
    """(hold id, reserved at) from `TAG_HOLD_METADATA`'s value; None for anything else (events are
    untrusted input: a malformed value releases nothing)."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    hold_id, sep, at = text.partition("@")
    if not sep or not 1 <= len(hold_id) <= 32 or not set(hold_id) <= _HOLD_ID_CHARS:
        return None
    if not at.isascii() or not at.isdigit() or len(at) > 12:
        return None
    return hold_id, int(at)


class BudgetAction(StrEnum):
    NOTIFY = "notify"
    BLOCK = "block"
    SWITCH = "switch"


class BudgetStateName(StrEnum):
    OK = "ok"
    #: At or past the lowest threshold below 100%.
    WARNING = "warning"
    #: At or past 100%: the action applies.
    EXHAUSTED = "exhausted"


def check_timezone(name: str) -> str:
    """An IANA zone name that exists (`UTC`, `Asia/Kolkata`, …); ValueError otherwise."""
    if not isinstance(name, str) or not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(f"unknown timezone {str(name)[:64]!r}: use an IANA name such as Europe/Paris")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name[:64]!r}: use an IANA name such as Europe/Paris") from exc
    return name


class SwitchTarget(BaseModel):
    """Where `switch` sends calls once the budget is spent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Provider
    model: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")


class TagScope(BaseModel):
    """What a tag budget counts: the calls whose event carries tag `key` with value `value`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(pattern=TAG_KEY_PATTERN)
    value: str = Field(pattern=TAG_VALUE_PATTERN)

    @field_validator("value")
    @classmethod
    def _not_other(cls, value: str) -> str:
        if value == OTHER_TAG_VALUE:
            raise ValueError(f"{OTHER_TAG_VALUE} is the fold of values past the bound, not a value one can budget")
        return value

    @property
    def label(self) -> str:
        """`customer=c-42`."""
        return f"{self.key}={self.value}"


class Budget(BaseModel):
    """A user's monthly budget (what the settings table stores)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit_nanos: int = Field(gt=0, le=MAX_LIMIT_NANOS)
    timezone: str = "UTC"
    thresholds: tuple[int, ...] = DEFAULT_THRESHOLDS
    action: BudgetAction = BudgetAction.NOTIFY
    switch_to: SwitchTarget | None = None
    strict: bool = False
    updated_at: datetime | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("give at least one threshold")
        if len(value) > MAX_THRESHOLDS:
            raise ValueError(f"at most {MAX_THRESHOLDS} thresholds are allowed")
        for percent in value:
            if isinstance(percent, bool) or not 1 <= percent <= MAX_THRESHOLD_PERCENT:
                raise ValueError(f"a threshold is a whole percentage from 1 to {MAX_THRESHOLD_PERCENT}")
        if len(set(value)) != len(value):
            raise ValueError("thresholds must be distinct")
        return tuple(sorted(value))

    @model_validator(mode="after")
    def _switch(self) -> Budget:
        if self.action is BudgetAction.SWITCH and self.switch_to is None:
            raise ValueError("the switch action needs switchTo: the provider and model to switch to")
        if self.action is not BudgetAction.SWITCH and self.switch_to is not None:
            raise ValueError("switchTo is only used with the switch action")
        if self.strict and self.action is BudgetAction.NOTIFY:
            raise ValueError("strict mode enforces the limit: use it with the block or switch action")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def period(self, at: datetime) -> Period:
        return period_of(at, self.timezone)

    def threshold_nanos(self, percent: int) -> int:
        """The spend at which `percent` is reached (rounded up: 50% of 1 nano is reached at 1)."""
        return -((-self.limit_nanos * percent) // 100)


@dataclass(frozen=True, slots=True)
class Period:
    """One local calendar month: [start, end) as aware datetimes in the budget's zone."""

    key: str
    start: datetime
    end: datetime

    @property
    def start_utc(self) -> datetime:
        return self.start.astimezone(UTC)

    @property
    def end_utc(self) -> datetime:
        return self.end.astimezone(UTC)

    def contains(self, at: datetime) -> bool:
        return self.start_utc <= at.astimezone(UTC) < self.end_utc


def period_of(at: datetime, tz: str) -> Period:
    """The local month holding instant `at` in zone `tz` (the reset is local midnight of the 1st)."""
    if at.tzinfo is None:
        raise ValueError("an instant must be timezone-aware")
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    start = datetime(local.year, local.month, 1, tzinfo=zone)
    following = (start + timedelta(days=32)).replace(day=1)
    return Period(
        f"{local.year:04d}-{local.month:02d}", start, datetime(following.year, following.month, 1, tzinfo=zone)
    )


def period_by_key(key: str, tz: str) -> Period:
    """The period named `2026-11` in zone `tz`."""
    year, month = (int(part) for part in key.split("-"))
    return period_of(datetime(year, month, 15, 12, tzinfo=ZoneInfo(tz)), tz)


def crossed_thresholds(budget: Budget, spent_nanos: int) -> list[int]:
    """The thresholds reached by `spent_nanos`, lowest first."""
    return [p for p in budget.thresholds if spent_nanos >= budget.threshold_nanos(p)]


def percent_of(limit_nanos: int, spent_nanos: int) -> Decimal:
    return (Decimal(spent_nanos) * 100 / Decimal(limit_nanos)).quantize(_PERCENT_QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where a budget stands in a period: settled spend and outstanding reservations."""

    budget: Budget
    period: Period
    spent_nanos: int
    #: Reservations of strict callers in flight, plus settled calls the rollups do not hold yet.
    outstanding_nanos: int = 0

    @property
    def committed_nanos(self) -> int:
        return self.spent_nanos + max(self.outstanding_nanos, 0)

    @property
    def remaining_nanos(self) -> int:
        return max(self.budget.limit_nanos - self.committed_nanos, 0)

    @property
    def crossed(self) -> list[int]:
        return crossed_thresholds(self.budget, self.committed_nanos)

    @property
    def state(self) -> BudgetStateName:
        if self.committed_nanos >= self.budget.threshold_nanos(ENFORCED_PERCENT):
            return BudgetStateName.EXHAUSTED
        if any(p < ENFORCED_PERCENT for p in self.crossed):
            return BudgetStateName.WARNING
        return BudgetStateName.OK

    @property
    def exhausted(self) -> bool:
        return self.state is BudgetStateName.EXHAUSTED

    def as_api(self) -> dict[str, Any]:
        """The API's `status` object (camelCase like the settings area)."""
        return {
            "period": self.period.key,
            "periodStart": self.period.start,
            "periodEnd": self.period.end,
            "spentUsd": nanos_to_usd(self.spent_nanos),
            "reservedUsd": nanos_to_usd(max(self.outstanding_nanos, 0)),
            "remainingUsd": nanos_to_usd(self.remaining_nanos),
            "percentUsed": percent_of(self.budget.limit_nanos, self.committed_nanos),
            "state": self.state.value,
            "crossedThresholds": self.crossed,
        }


class BudgetAlert(BaseModel):
    """One threshold crossed by one user in one period: recorded once, published as an event.

    `alert_id` (`{user}:{period}:{percent}`) is deterministic, so a consumer can drop a repeated
    delivery (the event may be published more than once if a delivery fails half-way; the record
    is written exactly once).
    """

    model_config = ConfigDict(frozen=True)

    user_id: str
    period: str
    timezone: str
    threshold_percent: int
    limit_nanos: int
    spent_nanos: int
    action: BudgetAction
    crossed_at: datetime
    #: Set for a tag budget's alert (the tenant's budget has none).
    tag: TagScope | None = None

    @property
    def alert_id(self) -> str:
        if self.tag is not None:
            return f"{self.user_id}:tag:{self.tag.label}:{self.period}:{self.threshold_percent}"
        return f"{self.user_id}:{self.period}:{self.threshold_percent}"

    @property
    def budget_label(self) -> str:
        """What the messages call the budget: `monthly budget` or `customer=c-42 budget`."""
        return "monthly budget" if self.tag is None else f"{self.tag.label} budget"

    @property
    def percent_used(self) -> Decimal:
        return percent_of(self.limit_nanos, self.spent_nanos)

    def detail(self) -> dict[str, Any]:
        """The EventBridge `detail` (money as exact decimal strings)."""
        return {
            "schema_version": 1,
            "alert_id": self.alert_id,
            "user_id": self.user_id,
            "period": self.period,
            "timezone": self.timezone,
            "threshold_percent": self.threshold_percent,
            "limit_usd": str(nanos_to_usd(self.limit_nanos)),
            "spent_usd": str(nanos_to_usd(self.spent_nanos)),
            "percent_used": str(self.percent_used),
            # for messages that cannot compute (an e-mail rendered by EventBridge): cents, half-even
            "spent_display": format_usd(self.spent_nanos, 2),
            "limit_display": format_usd(self.limit_nanos, 2),
            "action": self.action.value,
            "crossed_at": format_timestamp(self.crossed_at),
            "budget_label": self.budget_label,
            "tag_key": None if self.tag is None else self.tag.key,
            "tag_value": None if self.tag is None else self.tag.value,
        }

    def as_api(self) -> dict[str, Any]:
        return {
            "alertId": self.alert_id,
            "period": self.period,
            "thresholdPercent": self.threshold_percent,
            "limitUsd": nanos_to_usd(self.limit_nanos),
            "spentUsd": nanos_to_usd(self.spent_nanos),
            "percentUsed": self.percent_used,
            "action": self.action.value,
            "crossedAt": self.crossed_at,
            "tagKey": None if self.tag is None else self.tag.key,
            "tagValue": None if self.tag is None else self.tag.value,
        }


class BudgetExceededError(LLMTallyError):
    """A call refused because the user's budget is spent (action `block`, or no room for a strict reservation)."""

    def __init__(self, message: str, *, user_id: str, period: str, limit_usd: Decimal, committed_usd: Decimal) -> None:
        super().__init__(message)
        self.user_id = user_id
        self.period = period
        self.limit_usd = limit_usd
        self.committed_usd = committed_usd
