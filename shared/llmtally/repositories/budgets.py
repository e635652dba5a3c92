"""Budgets in the settings table: the budget, one ledger per local period, and the alert records.

Items (partition `user_id`, sort `setting_type`):

- `budget`: the `llmtally.budgets.Budget` (`limit_nanos`, `timezone`, `thresholds`, `action`,
  `switch_to`, `strict`, `updated_at`).
- `budget_ledger#{period}` (e.g. `budget_ledger#2026-11`): what strict reservations are checked
  against, in one item so one conditional update can check it atomically —
  `spent_nanos` (the period's cost in the rollups, SET by the aggregator in the same transaction
  as the rollup deltas), `outstanding_nanos` (reservations in flight + settled strict calls the
  rollups do not hold yet; ADDed by reservations, settlements and the aggregator), `holds` (one
  entry per reservation in flight: `{n: nanos, x: expiry epoch s}`, so a crashed caller's
  reservation can be swept), `expires_at` (TTL: a year after the period).
- `budget_alert#{period}#{percent:04d}`: one threshold crossed, written with
  `attribute_not_exists` — the record that makes an alert fire exactly once — plus
  `published_at` once its event is on the bus.

Tag budgets (a budget on the calls tagged `key=value`, `llmtally.budgets.TagScope`) have the same
three kinds of item under their own prefixes — `tag_budget#{key}#{value}` (plus `tag_key`,
`tag_value`), `tag_budget_ledger#{period}#{key}#{value}`, `tag_budget_alert#{period}#{key}#{value}#{percent:04d}`
— so a tenant's tag budgets are one Query (`begins_with tag_budget#`), and the ledger and alert
code is the same with another key. Tag keys never hold `#`; values may, and are stored as
attributes too, so no key is parsed back.

DynamoDB conditions cannot add two attributes, so a reservation reads the ledger and writes on the
condition that `spent_nanos` is unchanged and `outstanding_nanos` still leaves room (see `reserve`).

Strict holds on a tag ledger outlive their call: on a tag ledger `outstanding_nanos` is always the
sum of its holds' `n`, and a hold goes through states keyed by its id (docs/budgets.md, "Strict tag
budgets"): reserved `{n: worst case, x}` → settled `{n: real cost, x: later, s}` by the caller →
removed by the aggregator once the call's event is in the rollups (`release_rolled_holds`, a
REMOVE conditional on the hold being there as read: whoever removes it first releases it, every
repeat finds it gone).
If the event is rolled up before the caller settles, the aggregator marks the hold `r` and the
settle removes it whole. Every hold, whatever its state, is swept at its expiry (a crashed caller,
an event that never arrived).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from llmtally.budgets import MAX_TAG_BUDGETS, Budget, BudgetAction, BudgetAlert, Period, SwitchTarget, TagScope
from llmtally.errors import StorageError
from llmtally.events import format_timestamp
from llmtally.repositories._dynamodb import batch_get
from llmtally.repositories.settings import SettingsRepository, _storage_error

BUDGET: Final = "budget"
LEDGER_PREFIX: Final = "budget_ledger#"
ALERT_PREFIX: Final = "budget_alert#"
TAG_BUDGET_PREFIX: Final = "tag_budget#"
TAG_LEDGER_PREFIX: Final = "tag_budget_ledger#"
TAG_ALERT_PREFIX: Final = "tag_budget_alert#"
#: Ledgers and alert records are kept a year after their period (TTL), then DynamoDB deletes them.
RECORD_TTL_S: Final = 366 * 86_400
_MAX_RESERVE_ATTEMPTS: Final = 50


@dataclass(frozen=True, slots=True)
class Hold:
    nanos: int
    expires_at: int
    #: A tag hold settled to its call's real cost, waiting for the call's event to be rolled up.
    settled: bool = False
    #: A tag hold whose call's event was rolled up before the caller settled: the settle removes it.
    rolled: bool = False


@dataclass(frozen=True, slots=True)
class Ledger:
    """A period's ledger as read (absent attributes read as 0 / empty)."""

    spent_nanos: int = 0
    outstanding_nanos: int = 0
    holds: Mapping[str, Hold] = field(default_factory=dict)
    exists: bool = False
    has_spent: bool = False
    has_holds: bool = False
    #: Thresholds whose alert event is known to be on the bus (a number set).
    alerted: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Reservation:
    """A strict caller's hold on a ledger: settle it with the call's real cost."""

    user_id: str
    period: str
    hold_id: str
    nanos: int
    tag: TagScope | None = None
    #: When the hold expires (epoch seconds): until then no sweep can have removed it.
    expires_at: int = 0
    #: When it was taken (epoch seconds): the aggregator finds a tag hold's period from it.
    reserved_at: int = 0


#: A settle this long before its hold's expiry knows the hold was not swept (callers' clocks differ).
_SWEEP_CLOCK_MARGIN_S: Final = 60
#: How long a settled tag hold waits for its call's event to be rolled up before it is swept: far
#: beyond the pipeline's seconds and the stream's retries, so only an event that never arrives (the
#: publisher's buffer lost it) is swept — conservative until then, never an overshoot.
SETTLED_HOLD_S: Final = 86_400
#: Settled holds released by one conditional update (keeps the expression far below DynamoDB's 4 KB).
_RELEASE_CHUNK: Final = 25


class NoRoomError(Exception):
    """A reservation did not fit: `committed` (spent + outstanding) + the request would pass the limit."""

    def __init__(self, committed_nanos: int) -> None:
        super().__init__("the budget has no room for this reservation")
        self.committed_nanos = committed_nanos


class BudgetRepository(SettingsRepository):
    """The budget items of the settings table (same table and client handling as `SettingsRepository`)."""

    # -- the budget ------------------------------------------------------------------------

    def get_budget(self, user_id: str) -> Budget | None:
        item = self._get(user_id, BUDGET)
        if item is None:
            return None
        return budget_from_item(item)

    def put_budget(self, user_id: str, budget: Budget, *, tag: TagScope | None = None) -> None:
        item: dict[str, Any] = {
            "user_id": user_id,
            "setting_type": budget_sort_key(tag),
            "limit_nanos": budget.limit_nanos,
            "timezone": budget.timezone,
            "thresholds": list(budget.thresholds),
            "action": budget.action.value,
            "strict": budget.strict,
            "updated_at": format_timestamp(budget.updated_at or datetime.now(UTC)),
        }
        if budget.switch_to is not None:
            item["switch_to"] = {"provider": budget.switch_to.provider.value, "model": budget.switch_to.model}
        if tag is not None:
            item["tag_key"], item["tag_value"] = tag.key, tag.value
        self._call("put_item", TableName=self._table, Item=self._serialize(item))

    def delete_budget(self, user_id: str, *, tag: TagScope | None = None) -> bool:
        response = self._call(
            "delete_item",
            TableName=self._table,
            Key=self._serialize({"user_id": user_id, "setting_type": budget_sort_key(tag)}),
            ReturnValues="ALL_OLD",
        )
        return bool(response.get("Attributes"))

    # -- tag budgets -------------------------------------------------------------------------

    def get_tag_budget(self, user_id: str, tag: TagScope) -> Budget | None:
        item = self._get(user_id, budget_sort_key(tag))
        return None if item is None else budget_from_item(item)

    def list_tag_budgets(self, user_id: str) -> list[tuple[TagScope, Budget]]:
        """The tenant's tag budgets (at most `MAX_TAG_BUDGETS`: one Query page), by key then value."""
        response = self._call(
            "query",
            TableName=self._table,
            KeyConditionExpression="user_id = :u AND begins_with(setting_type, :p)",
            ExpressionAttributeValues={":u": {"S": user_id}, ":p": {"S": TAG_BUDGET_PREFIX}},
            ConsistentRead=True,
            Limit=MAX_TAG_BUDGETS * 2,
        )
        found = []
        for raw in response.get("Items", []):
            item = {k: self._de.deserialize(v) for k, v in raw.items()}
            found.append((TagScope(key=str(item["tag_key"]), value=str(item["tag_value"])), budget_from_item(item)))
        return sorted(found, key=lambda pair: (pair[0].key, pair[0].value))

    def get_budgets(self, user_ids: Iterable[str]) -> dict[str, Budget]:
        """Several users' budgets in one consistent BatchGetItem per 100 users (the aggregator)."""
        keys = [self._serialize({"user_id": u, "setting_type": BUDGET}) for u in sorted(set(user_ids))]
        found: dict[str, Budget] = {}
        for raw in batch_get(self._client, self._table, keys):
            item = {k: self._de.deserialize(v) for k, v in raw.items()}
            found[str(item["user_id"])] = budget_from_item(item)
        return found

    # -- the ledger --------------------------------------------------------------------------

    def get_ledger(self, user_id: str, period: str, *, tag: TagScope | None = None) -> Ledger:
        item = self._get(user_id, ledger_sort_key(period, tag))
        if item is None:
            return Ledger()
        raw_holds = item.get("holds")
        holds = {
            str(k): Hold(int(v.get("n", 0)), int(v.get("x", 0)), settled="s" in v, rolled="r" in v)
            for k, v in (raw_holds or {}).items()
            if isinstance(v, dict)
        }
        return Ledger(
            spent_nanos=int(item.get("spent_nanos", 0)),
            outstanding_nanos=int(item.get("outstanding_nanos", 0)),
            holds=holds,
            exists=True,
            has_spent="spent_nanos" in item,
            has_holds=isinstance(raw_holds, dict),
            alerted=frozenset(int(p) for p in item.get("alerted", ())),
        )

    def seed_spent(self, user_id: str, period: Period, spent_nanos: int, *, tag: TagScope | None = None) -> None:
        """Set the period's spend from the rollups (a budget saved mid-period, or with another timezone;
        for a tag budget, also the aggregator after each batch with the tag)."""
        self._call(
            "update_item",
            TableName=self._table,
            Key=self._serialize({"user_id": user_id, "setting_type": ledger_sort_key(period.key, tag)}),
            UpdateExpression="SET spent_nanos = :spent, expires_at = :exp",
            ExpressionAttributeValues={
                ":spent": {"N": str(spent_nanos)},
                ":exp": {"N": str(int(period.end_utc.timestamp()) + RECORD_TTL_S)},
            },
        )

    def ledger_transaction_item(
        self, user_id: str, period: Period, *, spent_nanos: int | None, release_nanos: int
    ) -> dict[str, Any]:
        """The aggregator's update of a ledger, committed in its rollup transaction.

        `spent_nanos` (the period's rollup total after this transaction) is SET when given;
        `release_nanos` (settled strict calls this transaction brings into the rollups) leaves
        `outstanding_nanos`.
        """
        sets = ["expires_at = :exp", "updated_at = :now"]
        values: dict[str, Any] = {
            ":exp": {"N": str(int(period.end_utc.timestamp()) + RECORD_TTL_S)},
            ":now": {"S": format_timestamp(datetime.now(UTC))},
        }
        if spent_nanos is not None:
            sets.append("spent_nanos = :spent")
            values[":spent"] = {"N": str(spent_nanos)}
        expression = "SET " + ", ".join(sets)
        if release_nanos:
            expression += " ADD outstanding_nanos :release"
            values[":release"] = {"N": str(-release_nanos)}
        return {
            "Update": {
                "TableName": self._table,
                "Key": self._serialize({"user_id": user_id, "setting_type": LEDGER_PREFIX + period.key}),
                "UpdateExpression": expression,
                "ExpressionAttributeValues": values,
            }
        }

    def reserve(
        self,
        user_id: str,
        period: Period,
        nanos: int,
        *,
        limit_nanos: int,
        hold_seconds: int,
        tag: TagScope | None = None,
        hold_id: str | None = None,
    ) -> Reservation:
        """Hold `nanos` on the period's ledger, atomically, if spent + outstanding + nanos ≤ limit.

        Optimistic: read the ledger, then one conditional update — `spent_nanos` unchanged and
        `outstanding_nanos` ≤ limit − spent − nanos — that adds the hold (sweeping expired holds of
        crashed callers in the same update). A lost race re-reads and tries again; concurrent
        reservations only conflict when the budget is nearly full. Raises `NoRoomError`.

        `hold_id`: one call's holds on several ledgers share an id (its event names it once).
        """
        if nanos < 0:
            raise ValueError("a reservation cannot be negative")
        hold_id = hold_id or new_hold_id()
        key = self._serialize({"user_id": user_id, "setting_type": ledger_sort_key(period.key, tag)})
        ccf = self._client.exceptions.ConditionalCheckFailedException
        ttl = int(period.end_utc.timestamp()) + RECORD_TTL_S
        for attempt in range(_MAX_RESERVE_ATTEMPTS):
            if attempt:
                time.sleep(min(0.002 * 2 ** min(attempt, 6), 0.1) * (0.5 + secrets.randbelow(1000) / 1000))
            ledger = self.get_ledger(user_id, period.key, tag=tag)
            if not ledger.has_holds:
                self._init_ledger(key, ttl)
                continue
            now = int(time.time())
            expired = {hid: hold for hid, hold in ledger.holds.items() if hold.expires_at <= now}
            outstanding = ledger.outstanding_nanos - sum(h.nanos for h in expired.values())
            room = limit_nanos - ledger.spent_nanos - nanos
            if outstanding > room:
                raise NoRoomError(ledger.spent_nanos + max(outstanding, 0))
            names = {"#h": "holds", "#new": hold_id}
            values: dict[str, Any] = {
                ":hold": {"M": {"n": {"N": str(nanos)}, "x": {"N": str(now + hold_seconds)}}},
                ":add": {"N": str(nanos - sum(h.nanos for h in expired.values()))},
                # the outstanding amount after the sweep must still leave room for this hold
                ":max": {"N": str(room + sum(h.nanos for h in expired.values()))},
            }
            # A retry of this update after its answer was lost (botocore re-sends a 500) may add the
            # hold's amount twice: conservative (the budget refuses early, never overshoots) until the
            # hold is settled. Treating "hold already there" as success would be exact on DynamoDB,
            # but on moto a concurrent update can fail after applying only part of its expression.
            conditions = ["outstanding_nanos <= :max"]
            if ledger.has_spent:
                conditions.append("spent_nanos = :spent")
                values[":spent"] = {"N": str(ledger.spent_nanos)}
            else:
                conditions.append("attribute_not_exists(spent_nanos)")
            removes = []
            for index, (hid, hold) in enumerate(expired.items()):
                names[f"#x{index}"] = hid
                names["#n"], names["#e"] = "n", "x"
                removes.append(f"#h.#x{index}")
                # unchanged since the read: a tag hold settled meanwhile has another amount and expiry
                conditions.append(f"#h.#x{index}.#n = :n{index} AND #h.#x{index}.#e = :e{index}")
                values[f":n{index}"] = {"N": str(hold.nanos)}
                values[f":e{index}"] = {"N": str(hold.expires_at)}
            expression = "SET #h.#new = :hold ADD outstanding_nanos :add"
            if removes:
                expression += " REMOVE " + ", ".join(removes)
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=key,
                    UpdateExpression=expression,
                    ConditionExpression=" AND ".join(conditions),
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                )
            except ccf:
                continue
            except Exception as exc:
                raise _storage_error("update_item", exc) from exc
            break
        else:
            raise StorageError("budget reservation: too much contention on the ledger; try again")
        return Reservation(user_id, period.key, hold_id, nanos, tag, expires_at=now + hold_seconds, reserved_at=now)

    def cancel(self, reservation: Reservation) -> None:
        """Give a hold back whole (a call refused by another budget after this one reserved): the hold
        and its amount leave the ledger; nothing if it is gone already (swept, or cancelled before)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=self._ledger_key(reservation),
                UpdateExpression="REMOVE #h.#id ADD outstanding_nanos :delta",
                ConditionExpression="attribute_exists(#h.#id) AND #h.#id.#n = :n",
                ExpressionAttributeNames={"#h": "holds", "#id": reservation.hold_id, "#n": "n"},
                ExpressionAttributeValues={
                    ":delta": {"N": str(-reservation.nanos)},
                    ":n": {"N": str(reservation.nanos)},
                },
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return
        except Exception as exc:
            raise _storage_error("update_item", exc) from exc

    def _ledger_key(self, reservation: Reservation) -> dict[str, Any]:
        return self._serialize(
            {"user_id": reservation.user_id, "setting_type": ledger_sort_key(reservation.period, reservation.tag)}
        )

    def settle(self, reservation: Reservation, actual_nanos: int) -> None:
        """Replace a hold by the call's real cost (outstanding until the aggregator brings it into `spent`).

        If the hold was swept meanwhile (the call outlived its hold), its amount has already left
        `outstanding_nanos`: the real cost is added on its own. A hold missing before its expiry was
        not swept: an earlier attempt of this settle (retried by the SDK after its answer was lost)
        removed it, and nothing more is added.

        A tag hold is kept, settled, until the aggregator releases it (`settle_tag_hold`).
        """
        if reservation.tag is not None:
            self.settle_tag_hold(reservation, actual_nanos)
            return
        key = self._ledger_key(reservation)
        try:
            self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="REMOVE #h.#id ADD outstanding_nanos :delta",
                ConditionExpression="attribute_exists(#h.#id)",
                ExpressionAttributeNames={"#h": "holds", "#id": reservation.hold_id},
                ExpressionAttributeValues={":delta": {"N": str(actual_nanos - reservation.nanos)}},
            )
            return
        except self._client.exceptions.ConditionalCheckFailedException:
            if time.time() < reservation.expires_at - _SWEEP_CLOCK_MARGIN_S:
                return
        except Exception as exc:
            raise _storage_error("update_item", exc) from exc
        if actual_nanos:
            self._call(
                "update_item",
                TableName=self._table,
                Key=key,
                UpdateExpression="ADD outstanding_nanos :delta",
                ExpressionAttributeValues={":delta": {"N": str(actual_nanos)}},
            )

    def settle_tag_hold(self, reservation: Reservation, actual_nanos: int) -> None:
        """Settle a hold on a tag ledger (states in the module doc); idempotent under retries.

        Reserved → settled: `n` becomes the real cost, the expiry moves `SETTLED_HOLD_S` on.
        Rolled (the event came first) → removed with its whole amount. Missing before its expiry: an
        earlier attempt of this settle did it (and the aggregator may have released it since):
        nothing. Missing after its expiry: swept while the call ran — the real cost comes back as a
        settled hold, so the aggregator still releases it exactly once.
        """
        ccf = self._client.exceptions.ConditionalCheckFailedException
        key = self._ledger_key(reservation)
        names = {"#h": "holds", "#id": reservation.hold_id, "#n": "n", "#s": "s", "#r": "r"}
        settled = {
            "M": {
                "n": {"N": str(actual_nanos)},
                "x": {"N": str(int(time.time()) + SETTLED_HOLD_S)},
                "s": {"BOOL": True},
            }
        }
        attempts: list[dict[str, Any]] = [
            {
                "UpdateExpression": "SET #h.#id = :held ADD outstanding_nanos :delta",
                "ConditionExpression": "attribute_exists(#h.#id) AND #h.#id.#n = :n "
                "AND attribute_not_exists(#h.#id.#s) AND attribute_not_exists(#h.#id.#r)",
                "ExpressionAttributeValues": {
                    ":held": settled,
                    ":delta": {"N": str(actual_nanos - reservation.nanos)},
                    ":n": {"N": str(reservation.nanos)},
                },
            },
            {
                "UpdateExpression": "REMOVE #h.#id ADD outstanding_nanos :delta",
                "ConditionExpression": "attribute_exists(#h.#id.#r) AND #h.#id.#n = :n",
                "ExpressionAttributeValues": {
                    ":delta": {"N": str(-reservation.nanos)},
                    ":n": {"N": str(reservation.nanos)},
                },
            },
        ]
        if time.time() >= reservation.expires_at - _SWEEP_CLOCK_MARGIN_S and actual_nanos:
            attempts.append(
                {
                    "UpdateExpression": "SET #h.#id = :held ADD outstanding_nanos :delta",
                    "ConditionExpression": "attribute_not_exists(#h.#id)",
                    "ExpressionAttributeValues": {":held": settled, ":delta": {"N": str(actual_nanos)}},
                }
            )
        for attempt in attempts:
            used = {k: v for k, v in names.items() if k in attempt["UpdateExpression"] + attempt["ConditionExpression"]}
            try:
                self._client.update_item(TableName=self._table, Key=key, ExpressionAttributeNames=used, **attempt)
                return
            except ccf:
                continue
            except Exception as exc:
                raise _storage_error("update_item", exc) from exc

    def release_rolled_holds(
        self, user_id: str, period: str, tag: TagScope, hold_ids: Iterable[str]
    ) -> tuple[int, int]:
        """The aggregator, once the events of these holds' calls are in the rollups (and the ledger's
        `spent_nanos` includes them): each settled hold leaves the ledger with its amount, by a
        conditional REMOVE of the hold (all of a chunk in one update; if any of it was released
        meanwhile, one update per hold), so a redelivery, a retry after a crash or a concurrent
        evaluation finds it gone and releases nothing; a hold not settled yet is marked rolled (its
        settle removes it). Returns (holds released, nanos released)."""
        wanted = set(hold_ids)
        if not wanted:
            return 0, 0
        ledger = self.get_ledger(user_id, period, tag=tag)
        key = self._serialize({"user_id": user_id, "setting_type": ledger_sort_key(period, tag)})
        found = sorted(wanted & set(ledger.holds))
        settled = [(hid, ledger.holds[hid].nanos) for hid in found if ledger.holds[hid].settled]
        released = released_nanos = 0
        for index in range(0, len(settled), _RELEASE_CHUNK):
            chunk = settled[index : index + _RELEASE_CHUNK]
            if len(chunk) > 1 and self._release(key, chunk):
                released, released_nanos = released + len(chunk), released_nanos + sum(n for _, n in chunk)
                continue
            for one in chunk:
                if self._release(key, [one]):
                    released, released_nanos = released + 1, released_nanos + one[1]
        for hold_id in found:
            hold = ledger.holds[hold_id]
            if hold.settled or hold.rolled:
                continue
            self._conditional_update(
                key,
                UpdateExpression="SET #h.#id.#r = :true",
                ConditionExpression="attribute_exists(#h.#id) AND attribute_not_exists(#h.#id.#s)",
                ExpressionAttributeNames={"#h": "holds", "#id": hold_id, "#s": "s", "#r": "r"},
                ExpressionAttributeValues={":true": {"BOOL": True}},
            )
        return released, released_nanos

    def _release(self, key: Mapping[str, Any], holds: Sequence[tuple[str, int]]) -> bool:
        """REMOVE these settled holds and their amounts, if every one is still there as read."""
        names = {"#h": "holds", "#n": "n", "#s": "s"}
        values: dict[str, Any] = {":delta": {"N": str(-sum(n for _, n in holds))}}
        removes, conditions = [], []
        for index, (hold_id, nanos) in enumerate(holds):
            names[f"#i{index}"] = hold_id
            values[f":n{index}"] = {"N": str(nanos)}
            removes.append(f"#h.#i{index}")
            conditions.append(f"attribute_exists(#h.#i{index}.#s) AND #h.#i{index}.#n = :n{index}")
        return self._conditional_update(
            key,
            UpdateExpression="REMOVE " + ", ".join(removes) + " ADD outstanding_nanos :delta",
            ConditionExpression=" AND ".join(conditions),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def _conditional_update(self, key: Mapping[str, Any], **update: Any) -> bool:
        """One conditional UpdateItem: False when its condition failed (someone else's write counts)."""
        try:
            self._client.update_item(TableName=self._table, Key=key, **update)
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        except Exception as exc:
            raise _storage_error("update_item", exc) from exc
        return True

    def _init_ledger(self, key: Mapping[str, Any], ttl: int) -> None:
        self._call(
            "update_item",
            TableName=self._table,
            Key=key,
            UpdateExpression="SET holds = if_not_exists(holds, :empty), "
            "outstanding_nanos = if_not_exists(outstanding_nanos, :zero), expires_at = :exp",
            ExpressionAttributeValues={":empty": {"M": {}}, ":zero": {"N": "0"}, ":exp": {"N": str(ttl)}},
        )

    # -- alerts --------------------------------------------------------------------------------

    def record_alert(self, alert: BudgetAlert, *, period_end: datetime) -> bool:
        """Write the alert record if it does not exist: True for the one writer that fired it."""
        item = {
            "user_id": alert.user_id,
            "setting_type": alert_sort_key(alert.period, alert.threshold_percent, alert.tag),
            "period": alert.period,
            "timezone": alert.timezone,
            "threshold_percent": alert.threshold_percent,
            "limit_nanos": alert.limit_nanos,
            "spent_nanos": alert.spent_nanos,
            "action": alert.action.value,
            "crossed_at": format_timestamp(alert.crossed_at),
            "expires_at": int(period_end.timestamp()) + RECORD_TTL_S,
        }
        if alert.tag is not None:
            item["tag_key"], item["tag_value"] = alert.tag.key, alert.tag.value
        try:
            self._client.put_item(
                TableName=self._table,
                Item=self._serialize(item),
                ConditionExpression="attribute_not_exists(setting_type)",
            )
            return True
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        except Exception as exc:
            raise _storage_error("put_item", exc) from exc

    def get_alert(
        self, user_id: str, period: str, percent: int, *, tag: TagScope | None = None
    ) -> tuple[BudgetAlert, bool] | None:
        """An alert record and whether its event is known to be published."""
        item = self._get(user_id, alert_sort_key(period, percent, tag))
        return None if item is None else (alert_from_item(item), "published_at" in item)

    def delete_unpublished_alert(self, alert: BudgetAlert) -> None:
        """Remove an alert record whose event could not be published (so it fires again on retry)."""
        key = self._serialize(
            {"user_id": alert.user_id, "setting_type": alert_sort_key(alert.period, alert.threshold_percent, alert.tag)}
        )
        try:
            self._client.delete_item(
                TableName=self._table, Key=key, ConditionExpression="attribute_not_exists(published_at)"
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            pass
        except Exception as exc:
            raise _storage_error("delete_item", exc) from exc

    def mark_published(self, alert: BudgetAlert) -> None:
        """Note on the alert record and on the period's ledger that the event is on the bus."""
        now = {"S": format_timestamp(datetime.now(UTC))}
        self._call(
            "update_item",
            TableName=self._table,
            Key=self._serialize(
                {
                    "user_id": alert.user_id,
                    "setting_type": alert_sort_key(alert.period, alert.threshold_percent, alert.tag),
                }
            ),
            UpdateExpression="SET published_at = :now",
            ExpressionAttributeValues={":now": now},
        )
        self._call(
            "update_item",
            TableName=self._table,
            Key=self._serialize({"user_id": alert.user_id, "setting_type": ledger_sort_key(alert.period, alert.tag)}),
            UpdateExpression="ADD alerted :p",
            ExpressionAttributeValues={":p": {"NS": [str(alert.threshold_percent)]}},
        )

    def list_alerts(self, user_id: str, limit: int = 50, *, tags: bool = False) -> list[BudgetAlert]:
        """The user's alerts (the tenant budget's, or with `tags` every tag budget's), newest first."""
        # Sort keys order by period then threshold, so newest-first is a backwards Query.
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "user_id = :u AND begins_with(setting_type, :p)",
            "ExpressionAttributeValues": {
                ":u": {"S": user_id},
                ":p": {"S": TAG_ALERT_PREFIX if tags else ALERT_PREFIX},
            },
            "ConsistentRead": True,
            "ScanIndexForward": False,
            "Limit": limit,
        }
        response = self._call("query", **kwargs)
        alerts = [
            alert_from_item({k: self._de.deserialize(v) for k, v in raw.items()}) for raw in response.get("Items", [])
        ]
        return sorted(alerts, key=lambda a: (a.period, a.crossed_at, a.threshold_percent), reverse=True)


def new_hold_id() -> str:
    return secrets.token_hex(8)


def alert_sort_key(period: str, percent: int, tag: TagScope | None = None) -> str:
    if tag is not None:
        return f"{TAG_ALERT_PREFIX}{period}#{tag.key}#{tag.value}#{percent:04d}"
    return f"{ALERT_PREFIX}{period}#{percent:04d}"


def budget_sort_key(tag: TagScope | None = None) -> str:
    return BUDGET if tag is None else f"{TAG_BUDGET_PREFIX}{tag.key}#{tag.value}"


def ledger_sort_key(period: str, tag: TagScope | None = None) -> str:
    if tag is not None:
        return f"{TAG_LEDGER_PREFIX}{period}#{tag.key}#{tag.value}"
    return LEDGER_PREFIX + period


def budget_from_item(item: Mapping[str, Any]) -> Budget:
    switch = item.get("switch_to")
    return Budget(
        limit_nanos=int(item["limit_nanos"]),
        timezone=str(item.get("timezone", "UTC")),
        thresholds=tuple(int(p) for p in item.get("thresholds", ())) or (50, 80, 100),
        action=BudgetAction(str(item.get("action", "notify"))),
        switch_to=SwitchTarget.model_validate(dict(switch)) if isinstance(switch, Mapping) else None,
        strict=bool(item.get("strict", False)),
        updated_at=_instant(str(item["updated_at"])) if item.get("updated_at") else None,
    )


def alert_from_item(item: Mapping[str, Any]) -> BudgetAlert:
    return BudgetAlert(
        user_id=str(item["user_id"]),
        period=str(item["period"]),
        timezone=str(item["timezone"]),
        threshold_percent=int(item["threshold_percent"]),
        limit_nanos=int(item["limit_nanos"]),
        spent_nanos=int(item["spent_nanos"]),
        action=BudgetAction(str(item["action"])),
        crossed_at=_instant(str(item["crossed_at"])),
        tag=TagScope(key=str(item["tag_key"]), value=str(item["tag_value"])) if "tag_key" in item else None,
    )


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
