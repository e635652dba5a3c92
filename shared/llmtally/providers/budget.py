"""Budget enforcement in the library: check before a call, block or switch, or reserve (strict) and settle.

`BudgetedProvider` wraps a `TrackedProvider` (enforcing a budget only makes sense for calls that are
metered). Before each call it looks at the user's budget state through a `BudgetGuard` (budget and
period ledger, cached for `ttl_seconds`, 30 s by default):

- no budget, or under 100%: the call goes through;
- at 100% with `notify`: the call goes through (the alert went out from the pipeline);
- at 100% with `block`: `BudgetExceededError` — no provider request is made;
- at 100% with `switch`: the call goes to `switch_to` (same provider: another model; another
  provider: a provider built by the `switch` factory, e.g. from the user's stored key).

Strict mode (the budget's `strict`) does not trust a cached figure: before each call it reserves the
call's worst case — every byte of the prompt counted as a token (byte-level tokenizers never make
more tokens than bytes) at the dearest input price (input or cache write) plus `max_tokens` at the
dearest output price (output or reasoning) — on the period's ledger, atomically
(`BudgetRepository.reserve`); no room → switch (if the switch target's worst case fits) or block.
After the call the reservation is settled to the real cost, which stays outstanding until the
aggregator brings the call's event into the rollups (the event carries the ledger period in
`metadata`, see `llmtally.budgets.STRICT_PERIOD_METADATA`). So N concurrent strict callers can never
commit more than the limit: each one's real cost is at most its reservation. Streams too: their
reservation is settled when the stream ends or is closed.

Strict tag budgets (a budget on the calls tagged `customer=c-42`, `strict`) reserve the same way on
their own ledgers, for the tags of the call's `llmtally.attribution(tags=...)`: one call holds on
the tenant's strict budget and on each strict tag budget, all or none (`BudgetGuard.reserve_strict`
gives back what it took when one refuses), under one hold id that its event carries
(`llmtally.budgets.TAG_HOLD_METADATA`); the aggregator releases each tag hold exactly once after
rolling the event up (`BudgetRepository.release_rolled_holds`).

Async (`agenerate`, `astream`): the same decisions on the same code. The budget state, the
reservation, a switch target's construction and the settlement are storage calls (boto3, in the
repositories): they run off the event loop (`asyncio.to_thread`), except a fresh cached state
that needs no decision beyond "go ahead". `astream` decides when it is first iterated, so its
`BudgetExceededError` comes from the first `__anext__` (no request is made). A task cancelled
mid-call or mid-stream settles its reservation (what the provider had billed that is known: none
for a cancelled call) before the `CancelledError` propagates; its one event comes from tracking.
A task cancelled while its holds are being taken makes no call: the worker thread finishes, and
what it took is given back whole (`BudgetGuard.cancel`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from functools import cache
from typing import Any, Final

from llmtally.budgets import (
    STRICT_PERIOD_METADATA,
    TAG_HOLD_METADATA,
    Budget,
    BudgetAction,
    BudgetExceededError,
    BudgetStatus,
    SwitchTarget,
    TagScope,
    format_tag_hold,
)
from llmtally.events import MetadataValue, Provider
from llmtally.money import NANOS_PER_USD, nanos_to_usd
from llmtally.pricing import CostSource, default_price_book
from llmtally.providers.base import (
    DEFAULT_MAX_TOKENS,
    LLMAsyncStream,
    LLMStream,
    Message,
    ProviderResponse,
    StreamItem,
    _StreamState,
)
from llmtally.providers.errors import ProviderError
from llmtally.providers.tracking import TrackedProvider
from llmtally.responses import LLMUsage

logger = logging.getLogger("llmtally.providers.budget")

DEFAULT_STATUS_TTL_S: Final = 30.0
#: How long a strict reservation holds if its caller never settles it (a crash): then it is swept.
DEFAULT_HOLD_S: Final = 900
#: Tokens a message's framing may add beyond its text (role markers, separators).
MESSAGE_OVERHEAD_TOKENS: Final = 16
_MILLION: Final = Decimal(1_000_000)


def worst_case_nanos(
    provider: Provider | str,
    model: str,
    *,
    prompt: str | None,
    messages: Sequence[Message] | None,
    system: str | None,
    max_tokens: int,
    at: datetime | None = None,
    extra_input_tokens: int = 0,
) -> int:
    """The most a call can cost (see the module doc). ValueError if the model has no known price.

    `extra_input_tokens`: input the texts do not show (media referenced by URL; see providers.native).
    """
    from llmtally.errors import UnknownModelError

    texts = [system or "", prompt or "", *(m["content"] for m in messages or ())]
    turns = len(messages or ()) + (1 if prompt is not None else 0) + (1 if system else 0)
    input_bound = sum(len(t.encode("utf-8")) for t in texts) + MESSAGE_OVERHEAD_TOKENS * max(turns, 1)
    input_bound += extra_input_tokens
    try:
        prices = default_price_book().unit_prices(Provider(provider), model, at)
    except UnknownModelError:
        raise ValueError(
            f"strict budget: no price is known for {provider}/{model}, so its worst case cannot be reserved"
        ) from None
    input_price = max(
        p for p in (prices.input_mtok, prices.cache_write_mtok, prices.cache_write_1h_mtok) if p is not None
    )
    output_price = max(p for p in (prices.output_mtok, prices.reasoning_mtok) if p is not None)
    usd = (input_bound * input_price + max_tokens * output_price) / _MILLION
    return int((usd * NANOS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True, slots=True)
class StrictHold:
    """One call's strict reservations — the tenant budget's and every strict tag budget's of its
    tags — taken all or none, sharing one hold id (`BudgetGuard.reserve_strict`)."""

    reservations: tuple[Any, ...]
    hold_id: str
    reserved_at: int

    @property
    def tenant(self) -> Any | None:
        return next((r for r in self.reservations if r.tag is None), None)

    @property
    def period(self) -> str | None:
        """The tenant reservation's period (None: only tag budgets hold this call)."""
        tenant = self.tenant
        return None if tenant is None else str(tenant.period)

    def metadata(self) -> dict[str, MetadataValue]:
        """What the call's event carries so the aggregator can release it: the tenant ledger's period
        (`STRICT_PERIOD_METADATA`) and the tag holds' id (`TAG_HOLD_METADATA`)."""
        found: dict[str, MetadataValue] = {}
        if self.period is not None:
            found[STRICT_PERIOD_METADATA] = self.period
        if any(r.tag is not None for r in self.reservations):
            found[TAG_HOLD_METADATA] = format_tag_hold(self.hold_id, self.reserved_at)
        return found


@dataclass(frozen=True, slots=True)
class _Cached:
    status: BudgetStatus | None
    until: float


class BudgetGuard:
    """A user's budget state for the library (cached briefly), and strict reservations."""

    def __init__(
        self,
        repository: Any | None = None,
        *,
        ttl_seconds: float = DEFAULT_STATUS_TTL_S,
        hold_seconds: int = DEFAULT_HOLD_S,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repository = repository
        self._ttl = ttl_seconds
        self._hold_seconds = hold_seconds
        self._clock = clock
        self._now = now
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    @property
    def repository(self) -> Any:
        if self._repository is not None:
            return self._repository
        from llmtally.repositories.budgets import BudgetRepository

        # Built per use (cheap: clients are cached per endpoint by llmtally.aws), so the process-wide
        # guard follows the current settings.
        return BudgetRepository()

    def status(self, user_id: str) -> BudgetStatus | None:
        """The user's budget and its period's ledger, or None without a budget (cached `ttl_seconds`)."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(user_id)
            if hit is not None and hit.until > now:
                return hit.status
        budget: Budget | None = self.repository.get_budget(user_id)
        status = None
        if budget is not None:
            period = budget.period(self._now())
            ledger = self.repository.get_ledger(user_id, period.key)
            status = BudgetStatus(budget, period, ledger.spent_nanos, ledger.outstanding_nanos)
        with self._lock:
            self._cache[user_id] = _Cached(status, now + self._ttl)
        return status

    def tag_status(self, user_id: str, tag: TagScope) -> BudgetStatus | None:
        """A tag budget's state (docs/budgets.md, "Tag budgets"), or None when the value has none;
        cached `ttl_seconds` like `status`."""
        cache_key = _tag_cache_key(user_id, tag)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(cache_key)
            if hit is not None and hit.until > now:
                return hit.status
        budget: Budget | None = self.repository.get_tag_budget(user_id, tag)
        status = None
        if budget is not None:
            period = budget.period(self._now())
            ledger = self.repository.get_ledger(user_id, period.key, tag=tag)
            status = BudgetStatus(budget, period, ledger.spent_nanos, ledger.outstanding_nanos)
        with self._lock:
            self._cache[cache_key] = _Cached(status, now + self._ttl)
        return status

    def tag_peek(self, user_id: str, tag: TagScope) -> tuple[bool, BudgetStatus | None]:
        """Like `peek`, for a tag budget."""
        with self._lock:
            hit = self._cache.get(_tag_cache_key(user_id, tag))
        if hit is not None and hit.until > self._clock():
            return True, hit.status
        return False, None

    def peek(self, user_id: str) -> tuple[bool, BudgetStatus | None]:
        """(True, status) when a fresh cached status is at hand, else (False, None): no storage call."""
        with self._lock:
            hit = self._cache.get(user_id)
        if hit is not None and hit.until > self._clock():
            return True, hit.status
        return False, None

    def invalidate(self, user_id: str | None = None) -> None:
        with self._lock:
            if user_id is None:
                self._cache.clear()
            else:
                self._cache.pop(user_id, None)

    def reserve(self, user_id: str, budget: Budget, nanos: int) -> Any:
        """Hold `nanos` on the current period's ledger; BudgetExceededError when it does not fit."""
        from llmtally.repositories.budgets import NoRoomError

        period = budget.period(self._now())
        try:
            return self.repository.reserve(
                user_id, period, nanos, limit_nanos=budget.limit_nanos, hold_seconds=self._hold_seconds
            )
        except NoRoomError as exc:
            self.invalidate(user_id)
            raise _exceeded(user_id, budget, period.key, exc.committed_nanos, extra_nanos=nanos) from None

    def reserve_strict(
        self,
        user_id: str,
        tenant: Budget | None,
        tags: Sequence[tuple[TagScope, Budget]],
        nanos: int,
    ) -> StrictHold:
        """Hold `nanos` on the tenant budget's ledger (when given) and on each tag budget's, all or none:
        the first that has no room ends it, what was taken is given back, and BudgetExceededError
        names the budget that refused."""
        from llmtally.repositories.budgets import NoRoomError, new_hold_id

        at = self._now()
        hold_id = new_hold_id()
        taken: list[Any] = []
        budgets: list[tuple[TagScope | None, Budget]] = [(None, tenant)] if tenant is not None else []
        budgets.extend(tags)
        for scope, budget in budgets:
            period = budget.period(at)
            try:
                taken.append(
                    self.repository.reserve(
                        user_id,
                        period,
                        nanos,
                        limit_nanos=budget.limit_nanos,
                        hold_seconds=self._hold_seconds,
                        tag=scope,
                        hold_id=hold_id,
                    )
                )
            except NoRoomError as exc:
                self._give_back(user_id, taken)
                self.invalidate(user_id if scope is None else _tag_cache_key(user_id, scope))
                if scope is None:
                    raise _exceeded(user_id, budget, period.key, exc.committed_nanos, extra_nanos=nanos) from None
                raise _tag_no_room(user_id, scope, budget, period.key, exc.committed_nanos, nanos) from None
            except BaseException:
                self._give_back(user_id, taken)
                raise
        return StrictHold(tuple(taken), hold_id, int(at.timestamp()))

    def cancel(self, reservation: Any) -> None:
        """Give a reservation (or each of a `StrictHold`'s) back whole: the call was never made."""
        failure: Exception | None = None
        for one in reservation.reservations if isinstance(reservation, StrictHold) else (reservation,):
            try:
                self.repository.cancel(one)
            except Exception as exc:  # give the others back; the failed hold expires by itself
                failure = failure or exc
        if failure is not None:
            raise failure

    def cancel_quietly(self, reservation: Any, user_id: str) -> None:
        """`cancel` that never raises into the caller: a hold not given back expires by itself (logged)."""
        try:
            self.cancel(reservation)
        except Exception as exc:  # the hold expires by itself
            logger.warning(
                "budget reservation not given back; it expires by itself",
                extra={"user_id": user_id, "error_class": type(exc).__name__},
            )

    def settle_quietly(self, reservation: Any, actual_nanos: int, user_id: str) -> None:
        """`settle` that never raises into the caller: the call's answer matters more, and a hold not
        settled expires by itself (logged)."""
        try:
            self.settle(reservation, actual_nanos)
        except Exception as exc:  # the hold expires by itself
            logger.warning(
                "budget reservation not settled; it expires by itself",
                extra={"user_id": user_id, "error_class": type(exc).__name__},
            )

    def _give_back(self, user_id: str, taken: Sequence[Any]) -> None:
        for reservation in taken:
            try:
                self.repository.cancel(reservation)
            except Exception as exc:  # the hold expires by itself
                logger.warning(
                    "budget reservation not given back; it expires by itself",
                    extra={"user_id": user_id, "error_class": type(exc).__name__},
                )

    def settle(self, reservation: Any, actual_nanos: int) -> None:
        """Settle a reservation (or each of a `StrictHold`'s) to the call's real cost."""
        if not isinstance(reservation, StrictHold):
            self.repository.settle(reservation, actual_nanos)
            return
        failure: Exception | None = None
        for one in reservation.reservations:
            try:
                self.repository.settle(one, actual_nanos)
            except Exception as exc:  # settle the others; the failed hold expires by itself
                failure = failure or exc
        if failure is not None:
            raise failure


def _tag_cache_key(user_id: str, tag: TagScope) -> str:
    return f"{user_id}\x00tag\x00{tag.key}\x00{tag.value}"


def _tag_no_room(
    user_id: str, tag: TagScope, budget: Budget, period: str, committed_nanos: int, extra_nanos: int
) -> BudgetExceededError:
    """A strict tag budget without room for this call's worst case."""
    limit = nanos_to_usd(budget.limit_nanos)
    committed = nanos_to_usd(committed_nanos)
    return BudgetExceededError(
        f"the {tag.label} budget of ${limit.normalize()} for {period} has no room for this call "
        f"(${committed.normalize()} spent or reserved; this call may cost up to "
        f"${nanos_to_usd(extra_nanos).normalize()}); calls tagged {tag.label} are blocked until the next "
        "period or a higher limit",
        user_id=user_id,
        period=period,
        limit_usd=limit,
        committed_usd=committed,
    )


def _attribution_tags() -> Mapping[str, str]:
    """The current `llmtally.attribution(tags=...)`; empty if the attribution module was never loaded
    (then no attribution can be in force, and it is not imported here)."""
    import sys

    context = sys.modules.get("llmtally.instrumentation.context")
    return {} if context is None else dict(context.current_attribution().tags)


def tag_scopes(tags: Mapping[str, object]) -> list[TagScope]:
    """The tag budgets' scopes a call's tags could fall under (invalid pairs left out)."""
    from pydantic import ValidationError

    scopes = []
    for key, value in sorted(tags.items()):
        try:
            scopes.append(TagScope(key=str(key), value=str(value)))
        except ValidationError:
            continue
    return scopes


def tag_exceeded(user_id: str, tag: TagScope, status: BudgetStatus) -> BudgetExceededError:
    """The refusal of a call tagged `tag` whose tag budget is spent (action block, or switch where a
    client cannot switch)."""
    limit = nanos_to_usd(status.budget.limit_nanos)
    committed = nanos_to_usd(status.committed_nanos)
    return BudgetExceededError(
        f"the {tag.label} budget of ${limit.normalize()} for {status.period.key} is used up "
        f"(${committed.normalize()} spent); calls tagged {tag.label} are blocked until the next period or a "
        "higher limit",
        user_id=user_id,
        period=status.period.key,
        limit_usd=limit,
        committed_usd=committed,
    )


def _exceeded(
    user_id: str, budget: Budget, period: str, committed_nanos: int, *, extra_nanos: int = 0
) -> BudgetExceededError:
    limit = nanos_to_usd(budget.limit_nanos)
    committed = nanos_to_usd(committed_nanos)
    detail = f"; this call may cost up to ${nanos_to_usd(extra_nanos).normalize()}" if extra_nanos else ""
    return BudgetExceededError(
        f"monthly budget of ${limit.normalize()} for {period} is used up (${committed.normalize()} spent or "
        f"reserved{detail}); calls are blocked until the next period or a higher limit",
        user_id=user_id,
        period=period,
        limit_usd=limit,
        committed_usd=committed,
    )


@cache
def default_budget_guard() -> BudgetGuard:
    """The process-wide guard (one status cache per process)."""
    return BudgetGuard()


#: Builds the provider to switch to when the target is another provider (e.g. from the user's key).
SwitchFactory = Callable[[SwitchTarget], TrackedProvider]


class BudgetedProvider:
    """A `TrackedProvider` whose calls obey the user's budget (see the module doc)."""

    def __init__(
        self,
        provider: TrackedProvider,
        *,
        guard: BudgetGuard | None = None,
        switch: SwitchFactory | None = None,
    ) -> None:
        if not isinstance(provider, TrackedProvider):
            raise TypeError("a budget is enforced on a TrackedProvider: untracked calls would never count")
        self.inner = provider
        self.user_id = provider.user_id
        self.guard = guard or default_budget_guard()
        self._switch = switch
        self._switched: dict[SwitchTarget, TrackedProvider] = {}
        #: Calls this wrapper sent to the switch target / refused (for callers' own metrics).
        self.switched_calls = 0
        self.blocked_calls = 0

    def __repr__(self) -> str:
        return f"BudgetedProvider({self.inner!r})"

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model(self) -> str:
        return self.inner.model

    def generate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        **kwargs: Any,
    ) -> ProviderResponse:
        call: dict[str, Any] = {"messages": messages, "system": system, "max_tokens": max_tokens, **kwargs}
        admitted = self._admit(prompt, model, metadata, call)
        if admitted.reservation is None:
            return admitted.provider.generate(prompt, model=admitted.model, metadata=admitted.metadata, **call)
        try:
            response = admitted.provider.generate(prompt, model=admitted.model, metadata=admitted.metadata, **call)
        except BaseException as exc:
            self._settle(admitted.reservation, _billed_by(exc))
            raise
        self._settle(admitted.reservation, _billed(response.usage))
        return response

    async def agenerate(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        **kwargs: Any,
    ) -> ProviderResponse:
        """`generate` on the provider's async calls; storage off the event loop (see the module doc)."""
        call: dict[str, Any] = {"messages": messages, "system": system, "max_tokens": max_tokens, **kwargs}
        admitted = await self._aadmit(prompt, model, metadata, call)
        if admitted.reservation is None:
            return await admitted.provider.agenerate(prompt, model=admitted.model, metadata=admitted.metadata, **call)
        try:
            response = await admitted.provider.agenerate(
                prompt, model=admitted.model, metadata=admitted.metadata, **call
            )
        except BaseException as exc:  # CancelledError included: settled, then propagated
            await self._asettle(admitted.reservation, _billed_by(exc))
            raise
        await self._asettle(admitted.reservation, _billed(response.usage))
        return response

    def stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        **kwargs: Any,
    ) -> LLMStream:
        """Like `generate`; under strict mode the reservation is settled when the stream ends (or is closed)."""
        call: dict[str, Any] = {"messages": messages, "system": system, "max_tokens": max_tokens, **kwargs}
        admitted = self._admit(prompt, model, metadata, call)
        inner = admitted.provider.stream(prompt, model=admitted.model, metadata=admitted.metadata, **call)
        if admitted.reservation is None:
            return inner
        return LLMStream(self._settling(inner, admitted.reservation), inner._state)

    def astream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Message] | None = None,
        system: str | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
        **kwargs: Any,
    ) -> LLMAsyncStream:
        """`stream` for `async for`: admitted on the first `__anext__`, settled when it ends, is closed or cancelled."""
        call: dict[str, Any] = {"messages": messages, "system": system, "max_tokens": max_tokens, **kwargs}
        state = _StreamState(model=model or self.model)
        return LLMAsyncStream(self._astream_items(prompt, model, metadata, call, state), state)

    async def _astream_items(
        self,
        prompt: str | None,
        model: str | None,
        metadata: Mapping[str, MetadataValue] | None,
        call: dict[str, Any],
        state: _StreamState,
    ) -> AsyncIterator[StreamItem]:
        admitted = await self._aadmit(prompt, model, metadata, call)
        inner = admitted.provider.astream(prompt, model=admitted.model, metadata=admitted.metadata, **call)
        actual = 0
        try:
            async for item in inner:
                state.partial = inner.partial_tokens
                yield item
            actual = _billed(inner.usage)
        except BaseException as exc:  # GeneratorExit (aclose) and CancelledError included
            actual = _billed_by(exc)
            raise
        finally:
            if inner.response is None:
                await inner.aclose()
            state.response, state.partial = inner.response, inner.partial_tokens
            if admitted.reservation is not None:
                await self._asettle(admitted.reservation, actual)

    def test_connection(self, model: str | None = None, *, generate: bool = False) -> Any:
        return self.inner.test_connection(model, generate=generate)

    # -- admission (shared by sync and async) -------------------------------------------------------

    def _admit(
        self,
        prompt: str | None,
        model: str | None,
        metadata: Mapping[str, MetadataValue] | None,
        call: dict[str, Any],
    ) -> _Admitted:
        """Where the call goes and what it holds: the cached states, then route (or reserve, strict)."""
        status = self.guard.status(self.user_id)
        tagged = [
            (scope, tag_status)
            for scope in tag_scopes(_attribution_tags())
            if (tag_status := self.guard.tag_status(self.user_id, scope)) is not None
        ]
        strict_tags = [(scope, s) for scope, s in tagged if s.budget.strict]
        tenant_strict = status is not None and status.budget.strict
        switched = self._tag_route(
            [(scope, s) for scope, s in tagged if not s.budget.strict], tenant_strict or bool(strict_tags)
        )
        if switched is not None:
            return _Admitted(switched[0], switched[1], metadata, None)
        if tenant_strict or strict_tags:
            provider, chosen, reservation, held = self._reserve(status, strict_tags, prompt, model, metadata, call)
            return _Admitted(provider, chosen, held, reservation)
        routed, routed_model = self._route(status, model)
        return _Admitted(routed, routed_model, metadata, None)

    def _tag_route(
        self, tagged: Sequence[tuple[TagScope, BudgetStatus]], strict: bool
    ) -> tuple[TrackedProvider, str] | None:
        """The non-strict tag budgets of the call's attribution (docs/budgets.md, "Tag budgets"): a spent
        one with `block` refuses the call; with `switch`, the call goes to its target (None: no tag
        budget decides). When a strict budget holds the call a tag switch acts as block (the switched
        call would escape that budget's reservation)."""
        for scope, tag_status in tagged:
            if not tag_status.exhausted or tag_status.budget.action is BudgetAction.NOTIFY:
                continue
            target = tag_status.budget.switch_to
            if tag_status.budget.action is BudgetAction.BLOCK or target is None or strict:
                self.blocked_calls += 1
                raise tag_exceeded(self.user_id, scope, tag_status)
            self.switched_calls += 1
            return self._target(target)
        return None

    async def _aadmit(
        self,
        prompt: str | None,
        model: str | None,
        metadata: Mapping[str, MetadataValue] | None,
        call: dict[str, Any],
    ) -> _Admitted:
        fresh, status = self.guard.peek(self.user_id)
        peeks = [self.guard.tag_peek(self.user_id, scope) for scope in tag_scopes(_attribution_tags())]
        tags_clear = all(ok and (s is None or not (s.exhausted or s.budget.strict)) for ok, s in peeks)
        if tags_clear and fresh and (status is None or not (status.budget.strict or status.exhausted)):
            return _Admitted(self.inner, model, metadata, None)  # nothing to decide, nothing to store
        # (to_thread copies the context: the thread sees the caller's attribution)
        admitting = asyncio.ensure_future(asyncio.to_thread(self._admit, prompt, model, metadata, call))
        try:
            return await asyncio.shield(admitting)
        except asyncio.CancelledError:
            # Cancelled while reserving: no call will be made, so what the thread reserves is given back.
            admitting.add_done_callback(self._give_back_orphan)
            raise

    def _give_back_orphan(self, admitting: asyncio.Future[_Admitted]) -> None:
        if admitting.cancelled() or admitting.exception() is not None:
            return
        reservation = admitting.result().reservation
        if reservation is not None:
            asyncio.get_running_loop().run_in_executor(None, self.guard.cancel_quietly, reservation, self.user_id)

    async def _asettle(self, reservation: Any, actual_nanos: int) -> None:
        # Off the loop; if the task is cancelled again meanwhile, the thread still settles.
        await asyncio.to_thread(self._settle, reservation, actual_nanos)

    # -- routing ---------------------------------------------------------------------------------

    def _route(self, status: BudgetStatus | None, model: str | None) -> tuple[TrackedProvider, str | None]:
        """Where a call goes from the cached state: as asked, to the switch target, or refused."""
        if status is None or not status.exhausted or status.budget.action is BudgetAction.NOTIFY:
            return self.inner, model
        budget = status.budget
        if budget.action is BudgetAction.BLOCK or budget.switch_to is None:
            self.blocked_calls += 1
            raise _exceeded(self.user_id, budget, status.period.key, status.committed_nanos)
        target, target_model = self._target(budget.switch_to)
        self.switched_calls += 1
        logger.info("budget spent: call switched", extra={"user_id": self.user_id, "model": target_model})
        return target, target_model

    # -- strict --------------------------------------------------------------------------------

    def _reserve(
        self,
        status: BudgetStatus | None,
        strict_tags: Sequence[tuple[TagScope, BudgetStatus]],
        prompt: str | None,
        model: str | None,
        metadata: Mapping[str, MetadataValue] | None,
        call: dict[str, Any],
    ) -> tuple[TrackedProvider, str, StrictHold, dict[str, MetadataValue]]:
        """Reserve the worst case on every strict budget of the call (the tenant's, its tags'), all or
        none: on the configured model, else on a strict budget's switch target; or refuse."""
        tenant = status.budget if status is not None and status.budget.strict else None
        strict = ([status] if tenant is not None and status is not None else []) + [s for _, s in strict_tags]
        if tenant is not None:
            first: tuple[TrackedProvider, str] = (self.inner, model or self.inner.model)
        else:  # a non-strict tenant budget routes first (block, or its switch)
            routed, routed_model = self._route(status, model)
            first = (routed, routed_model or routed.model)
        candidates: list[tuple[TrackedProvider, str]] = []
        if not any(s.exhausted and s.budget.action is BudgetAction.SWITCH for s in strict):
            candidates.append(first)
        for one in strict:
            if one.budget.action is BudgetAction.SWITCH and one.budget.switch_to is not None:
                target = self._target(one.budget.switch_to)
                if target not in candidates:
                    candidates.append(target)
        refusal: BudgetExceededError | None = None
        for provider, chosen in candidates:
            max_tokens = call["max_tokens"]
            if max_tokens is None:
                max_tokens = getattr(provider.inner, "max_tokens", DEFAULT_MAX_TOKENS)
            worst = worst_case_nanos(
                provider.inner.provider,
                chosen,
                prompt=prompt,
                messages=call["messages"],
                system=call["system"],
                max_tokens=max_tokens,
            )
            try:
                hold = self.guard.reserve_strict(
                    self.user_id, tenant, [(scope, s.budget) for scope, s in strict_tags], worst
                )
            except BudgetExceededError as exc:
                refusal = exc
                continue
            if (provider, chosen) != (self.inner, model or self.inner.model):
                self.switched_calls += 1
            return provider, chosen, hold, {**(metadata or {}), **hold.metadata()}
        self.blocked_calls += 1
        assert refusal is not None
        raise refusal

    def _settling(self, stream: LLMStream, reservation: Any) -> Iterator[StreamItem]:
        """Pass a strict stream through; settle its reservation however it ends.

        Completed: the real cost. Failed: what the error billed. Closed early: nothing — the
        cancelled call's event carries no reported cost, so the aggregator releases nothing either,
        and its partial tokens reach `spent` through the rollups.
        """
        actual = 0
        try:
            yield from stream
            actual = _billed(stream.usage)
        except BaseException as exc:
            actual = _billed_by(exc)
            raise
        finally:
            self._settle(reservation, actual)

    def _settle(self, reservation: Any, actual_nanos: int) -> None:
        self.guard.settle_quietly(reservation, actual_nanos, self.user_id)

    def _target(self, target: SwitchTarget) -> tuple[TrackedProvider, str]:
        if target.provider.value == self.inner.inner.provider:
            return self.inner, target.model
        provider = self._switched.get(target)
        if provider is None:
            if self._switch is None:
                raise ValueError(
                    f"the budget switches to {target.provider.value}, but no switch factory was given to build it"
                )
            provider = self._switch(target)
            self._switched[target] = provider
        return provider, target.model


@dataclass(frozen=True, slots=True)
class _Admitted:
    provider: TrackedProvider
    model: str | None
    metadata: Mapping[str, MetadataValue] | None
    reservation: Any


def _billed(usage: LLMUsage | None) -> int:
    """What a call is known to have cost (unpriced or absent usage: nothing known)."""
    if usage is None or usage.cost_source is CostSource.UNPRICED:
        return 0
    return usage.cost_nanos


def _billed_by(exc: BaseException) -> int:
    """What a failed call billed: the provider error's usage; nothing for anything else (cancelled, closed)."""
    return _billed(exc.usage) if isinstance(exc, ProviderError) else 0


def budgeted(
    provider: TrackedProvider, *, guard: BudgetGuard | None = None, switch: SwitchFactory | None = None
) -> BudgetedProvider:
    """Shorthand for `BudgetedProvider(...)`."""
    return BudgetedProvider(provider, guard=guard, switch=switch)
