"""Native SDK clients built from a user's stored key: tools, images, structured output — metered and budgeted.

    client = llmtally.providers.client_for_user("acme", "anthropic", asynchronous=True)
    message = await client.messages.create(model=..., max_tokens=1024, tools=[...], messages=[...])

`client_for_user` returns the provider's own client (`anthropic.Anthropic` / `AsyncAnthropic`,
`openai.OpenAI` / `AsyncOpenAI`, `google.genai.Client` — its `.aio` when asynchronous — or a
boto3 `bedrock-runtime` client for Bedrock, which has no async client), built with the user's
key from Secrets Manager (`SecretKeyStore`, as `provider_for_user`), and passed through
`llmtally.instrument(...)`, attributed to the user: every call is one usage event. The key lives
only inside the SDK client (its own attribute): it is never in this module's repr, logs,
exceptions or events.

Budgets (the user's, docs/budgets.md) are enforced before each call by a `BudgetClientGuard`
installed on the client (the instrumentation's guard hook):

* no budget, under 100%, or `notify` at 100%: the call goes through;
* `block` at 100%: `BudgetExceededError`, and no request is sent;
* `switch` at 100%: **acts as `block`** — a native client is bound to one provider and its
  request names its model, tools and formats in that provider's terms, so it cannot be redirected
  silently. The error says so; a service that wants the switch calls `provider_for_user`;
* strict budgets: each call reserves its worst case — every byte of the request's input (its
  JSON form: messages, system, tools, schemas, inline images) as a token, plus a fixed allowance
  per image or file referenced by URL or id, at the dearest input price, plus the request's
  output limit (`max_tokens`, `max_output_tokens`, `max_completion_tokens`, Gemini's
  `max_output_tokens`, Bedrock's `maxTokens`) at the dearest output price — and is settled to the
  priced usage when the call ends. A strict call without an output limit cannot be bounded and is
  refused (`BudgetExceededError` naming the missing parameter), as is a model without a price.
  The event carries the reported cost and the ledger period, so the aggregator moves the settled
  cost from outstanding to spent, as for `BudgetedProvider`;
* strict tag budgets (of the client's tags and the attribution's): the same reservation, on the
  tenant's strict budget and every strict tag budget of the call, all or none; the event carries
  the hold's id (`TAG_HOLD_METADATA`) so the aggregator releases each tag hold exactly once.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from llmtally.budgets import BudgetAction, BudgetExceededError
from llmtally.events import Provider, UsageSource
from llmtally.money import nanos_to_usd
from llmtally.providers.errors import PROVIDER_LABELS, AuthenticationError

if TYPE_CHECKING:
    from llmtally.budgets import BudgetStatus
    from llmtally.instrumentation._core import Amendment, Outcome
    from llmtally.pricing import PriceBook
    from llmtally.providers.budget import BudgetGuard
    from llmtally.providers.tracking import UsageSink
    from llmtally.providers.user import LLMPreferences, PreferencesStore, SecretKeyStore


#: Input tokens reserved for each image or file a strict request references by URL or id (its bytes
#: are not in the request). Above what the providers bill for one high-detail image.
REFERENCED_MEDIA_TOKENS: Final = 8_192
#: Request parameters that are not input (their bytes are not counted in a strict reservation).
_NOT_INPUT: Final = frozenset(
    {"model", "modelId", "stream", "max_tokens", "max_output_tokens", "max_completion_tokens", "extra_headers"}
)
_MEDIA_TYPES: Final = ("image", "file", "document", "input_image", "input_file", "image_url")


@dataclass(frozen=True, slots=True)
class _Ticket:
    reservation: Any
    provider: Provider


class BudgetClientGuard:
    """The user's budget around each call of a native client (see the module doc)."""

    refusals: tuple[type[BaseException], ...] = (BudgetExceededError,)

    def __init__(
        self,
        user_id: str,
        guard: BudgetGuard,
        *,
        price_book: PriceBook | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        self.user_id = user_id
        self.guard = guard
        self._price_book = price_book
        #: The client's own tags (`client_for_user(..., tags=)`); `attribution(tags=...)` wins per key.
        self._tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self._pending: set[asyncio.Future[None]] = set()
        self._lock = threading.Lock()
        #: Calls refused (for callers' own metrics).
        self.blocked_calls = 0

    def __repr__(self) -> str:
        return f"BudgetClientGuard(user_id={self.user_id!r})"

    @property
    def price_book(self) -> PriceBook:
        if self._price_book is None:
            from llmtally.pricing import default_price_book

            self._price_book = default_price_book()
        return self._price_book

    # -- before ------------------------------------------------------------------------------------

    def _call_tags(self) -> list[Any]:
        """The tag budgets' scopes of this call: the client's tags under the current attribution's."""
        from llmtally.instrumentation.context import current_attribution
        from llmtally.providers.budget import tag_scopes

        return tag_scopes({**self._tags, **current_attribution().tags})

    def _check_tags(self, scopes: list[Any]) -> list[tuple[Any, BudgetStatus]]:
        """Refuse the call when a tag budget it falls under is spent (block; switch acts as block here).
        Returns the strict tag budgets the call must reserve on."""
        from llmtally.providers.budget import tag_exceeded

        strict = []
        for scope in scopes:
            status = self.guard.tag_status(self.user_id, scope)
            if status is None:
                continue
            if status.exhausted and status.budget.action is not BudgetAction.NOTIFY:
                with self._lock:
                    self.blocked_calls += 1
                raise tag_exceeded(self.user_id, scope, status)
            if status.budget.strict:
                strict.append((scope, status))
        return strict

    def before(self, provider: Provider, model: str | None, kwargs: Mapping[str, Any]) -> _Ticket | None:
        return self._before(provider, model, kwargs, self._call_tags())

    def _before(
        self, provider: Provider, model: str | None, kwargs: Mapping[str, Any], scopes: list[Any]
    ) -> _Ticket | None:
        # `scopes` are read on the caller's side: an executor thread does not see its attribution.
        strict_tags = self._check_tags(scopes)
        status = self.guard.status(self.user_id)
        tenant_strict = status is not None and status.budget.strict
        if (
            status is not None
            and not tenant_strict
            and status.exhausted
            and status.budget.action is not BudgetAction.NOTIFY
        ):
            self._refuse(status)
        if tenant_strict or strict_tags:
            return self._reserve(status if tenant_strict else None, strict_tags, Provider(provider), model, kwargs)
        return None

    async def abefore(self, provider: Provider, model: str | None, kwargs: Mapping[str, Any]) -> _Ticket | None:
        fresh, status = self.guard.peek(self.user_id)
        scopes = self._call_tags()
        peeks = [self.guard.tag_peek(self.user_id, scope) for scope in scopes]
        tags_clear = all(ok and (s is None or not (s.exhausted or s.budget.strict)) for ok, s in peeks)
        if tags_clear and fresh and (status is None or not (status.budget.strict or status.exhausted)):
            return None  # nothing to decide, nothing to store
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, self._before, provider, model, dict(kwargs), scopes)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # Cancelled while reserving: release what the thread reserves, once it has.
            future.add_done_callback(self._release_orphan)
            raise

    def _release_orphan(self, future: asyncio.Future[_Ticket | None]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        ticket = future.result()
        if ticket is not None:  # no call was made: the holds are given back whole
            self._off_loop(self.guard.cancel_quietly, ticket.reservation, self.user_id)

    def _refuse(self, status: BudgetStatus) -> None:
        from llmtally.providers.budget import _exceeded

        with self._lock:
            self.blocked_calls += 1
        error = _exceeded(self.user_id, status.budget, status.period.key, status.committed_nanos)
        if status.budget.action is BudgetAction.SWITCH:
            error.args = (
                f"{error.args[0]} (a native client cannot switch provider or model: the budget's switch "
                "applies to provider_for_user calls)",
            )
        raise error

    def _reserve(
        self,
        status: BudgetStatus | None,
        strict_tags: list[tuple[Any, BudgetStatus]],
        provider: Provider,
        model: str | None,
        kwargs: Mapping[str, Any],
    ) -> _Ticket:
        """Reserve the worst case on the tenant's strict budget (`status`, when given) and on every
        strict tag budget of the call, all or none."""
        from llmtally.providers.budget import worst_case_nanos

        shown = status if status is not None else strict_tags[0][1]
        max_output = output_limit(provider, kwargs)
        reason = None
        if max_output is None:
            reason = "the request sets no output limit (max_tokens / max_output_tokens), so its worst case is unbounded"
        elif not model:
            reason = "the request names no model"
        if reason is None:
            text, media = input_size(kwargs)
            try:
                worst = worst_case_nanos(
                    provider,
                    str(model),
                    prompt=text,
                    messages=None,
                    system=None,
                    max_tokens=int(max_output or 0),
                    extra_input_tokens=media * REFERENCED_MEDIA_TOKENS,
                )
            except ValueError as exc:
                reason = str(exc)
        if reason is not None:
            with self._lock:
                self.blocked_calls += 1
            raise BudgetExceededError(
                f"strict budget: call refused: {reason}",
                user_id=self.user_id,
                period=shown.period.key,
                limit_usd=nanos_to_usd(shown.budget.limit_nanos),
                committed_usd=nanos_to_usd(shown.committed_nanos),
            )
        try:
            reservation = self.guard.reserve_strict(
                self.user_id,
                None if status is None else status.budget,
                [(scope, tag_status.budget) for scope, tag_status in strict_tags],
                worst,
            )
        except BudgetExceededError:
            with self._lock:
                self.blocked_calls += 1
            raise
        return _Ticket(reservation, provider)

    # -- after ---------------------------------------------------------------------------------------

    def after(self, ticket: Any, outcome: Outcome, model: str | None) -> Amendment | None:
        if not isinstance(ticket, _Ticket):
            return None
        from llmtally.instrumentation._core import Amendment
        from llmtally.pricing import CostSource
        from llmtally.responses import LLMUsage

        cost_nanos, reported = 0, None
        if outcome.usage_source is UsageSource.REPORTED and model:
            usage = LLMUsage.priced(
                provider=ticket.provider.value,
                model=model,
                tokens=outcome.tokens,
                latency_ms=0,
                price_book=self.price_book,
            )
            if usage.cost_source is not CostSource.UNPRICED:
                cost_nanos, reported = usage.cost_nanos, nanos_to_usd(usage.cost_nanos)
        self._settle_off_loop(ticket.reservation, cost_nanos)
        metadata: dict[str, str | int | bool | None] = dict(ticket.reservation.metadata())
        return Amendment(metadata=metadata, reported_cost_usd=reported)

    def _settle_off_loop(self, reservation: Any, nanos: int) -> None:
        """Settle now (no event loop in this thread), or on the loop's executor (never block a loop)."""
        self._off_loop(self._settle, reservation, nanos)

    def _off_loop(self, work: Any, *args: Any) -> None:
        """Run a storage call now (no event loop in this thread), or on the loop's executor."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            work(*args)
            return
        future = loop.run_in_executor(None, work, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: asyncio.Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _settle(self, reservation: Any, nanos: int) -> None:
        self.guard.settle_quietly(reservation, nanos, self.user_id)

    async def settled(self) -> None:
        """Wait for the settlements handed to worker threads (tests, graceful shutdown)."""
        while True:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return
            await asyncio.gather(*pending)


def output_limit(provider: Provider, kwargs: Mapping[str, Any]) -> int | None:
    """The request's cap on output tokens (reasoning included), wherever its SDK puts it."""
    for name in ("max_tokens", "max_output_tokens", "max_completion_tokens"):
        value = kwargs.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    config = kwargs.get("config")  # google-genai
    if config is not None:
        value = (
            config.get("max_output_tokens")
            if isinstance(config, Mapping)
            else getattr(config, "max_output_tokens", None)
        )
        if isinstance(value, int):
            return value
    inference = kwargs.get("inferenceConfig")  # Bedrock Converse
    if isinstance(inference, Mapping) and isinstance(inference.get("maxTokens"), int):
        return int(inference["maxTokens"])
    body = kwargs.get("body")  # Bedrock InvokeModel (Anthropic format)
    if isinstance(body, str | bytes):
        try:
            parsed = json.loads(body)
        except ValueError:
            return None
        if isinstance(parsed, dict) and isinstance(parsed.get("max_tokens"), int):
            return int(parsed["max_tokens"])
    return None


def input_size(kwargs: Mapping[str, Any]) -> tuple[str, int]:
    """The request's input as JSON text (a byte bound on its tokens) and how many media it references."""
    media = 0

    def plain(value: Any) -> Any:
        nonlocal media
        dump = getattr(value, "model_dump", None)
        if callable(dump):
            return plain(dump(mode="json", exclude_none=True))
        if isinstance(value, Mapping):
            kind = value.get("type")
            if isinstance(kind, str) and kind in _MEDIA_TYPES and not _inline(value):
                media += 1
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, bytes | bytearray):
            return "x" * len(value)
        if value is None or isinstance(value, str | int | float | bool):
            return value
        return repr(value)

    document = {k: plain(v) for k, v in kwargs.items() if k not in _NOT_INPUT}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")), media


def _inline(part: Mapping[str, Any]) -> bool:
    """Whether a media part carries its bytes (base64 source / data URL) rather than a reference."""
    source = part.get("source")
    if isinstance(source, Mapping) and source.get("type") == "base64":
        return True
    url = part.get("image_url")
    url = url.get("url") if isinstance(url, Mapping) else url
    return isinstance(url, str) and url.startswith("data:")


# -- building the client ------------------------------------------------------------------------------


def client_for_user(
    user_id: str,
    provider: Provider | str,
    *,
    asynchronous: bool = False,
    publisher: UsageSink | None = None,
    operation_type: str | None = None,
    tags: Mapping[str, Any] | None = None,
    preferences: LLMPreferences | Mapping[str, Any] | None = None,
    key_store: SecretKeyStore | None = None,
    preferences_store: PreferencesStore | None = None,
    enforce_budget: bool = True,
    budget_guard: BudgetGuard | None = None,
    force_tracking: bool = False,
    price_book: PriceBook | None = None,
    http_client: Any = None,
    base_url: str | None = None,
    region: str | None = None,
) -> Any:
    """The provider's native SDK client for `user_id`, on their stored key, metered and budgeted.

    Metered like `provider_for_user` (`LLMPreferences.tracks`: always for Bedrock; for the user's
    own key unless they turned `trackUsage` off, or `force_tracking`); a metered client obeys the
    user's budget unless `enforce_budget` is False (module doc). `publisher` defaults to the
    process-wide one. `http_client` (an httpx2 client, async when `asynchronous`) swaps the
    transport. Raises `AuthenticationError` when no key is stored, `ValueError` for an async
    Bedrock client (boto3 has none: use `provider_for_user(...).agenerate`).
    """
    from llmtally.instrumentation import instrument
    from llmtally.providers.user import LLMPreferences, PreferencesStore, default_key_store

    chosen = Provider(provider)
    if chosen is Provider.BEDROCK and asynchronous:
        raise ValueError(
            "boto3 has no async client: for Bedrock from async code use provider_for_user(...).agenerate / astream"
        )
    if preferences is None:
        prefs = (preferences_store or PreferencesStore()).load(user_id)
    elif isinstance(preferences, LLMPreferences):
        prefs = preferences
    else:
        prefs = LLMPreferences.model_validate(dict(preferences))
    client = _build(chosen, user_id, key_store or default_key_store(), asynchronous, http_client, base_url, region)
    if not (force_tracking or prefs.tracks(chosen)):
        return client
    guard = None
    if enforce_budget:
        from llmtally.providers.budget import default_budget_guard

        guard = BudgetClientGuard(user_id, budget_guard or default_budget_guard(), price_book=price_book, tags=tags)
    target = client.aio if chosen is Provider.GOOGLE and asynchronous else client
    instrument(target, publisher=publisher, user_id=user_id, operation_type=operation_type, tags=tags, guard=guard)
    return target


async def aclient_for_user(user_id: str, provider: Provider | str, **options: Any) -> Any:
    """`client_for_user(..., asynchronous=True)` from async code: the key and preferences read off the loop."""
    return await asyncio.to_thread(client_for_user, user_id, provider, asynchronous=True, **options)


def guard_of(client: Any) -> BudgetClientGuard | None:
    """The budget guard `client_for_user` installed on `client` (None: none)."""
    from llmtally.instrumentation._core import MARK

    for owner in (client, getattr(client, "_api_client", None)):
        defaults = getattr(owner, MARK, None)
        guard = getattr(defaults, "guard", None)
        if isinstance(guard, BudgetClientGuard):
            return guard
    return None


def _build(
    provider: Provider,
    user_id: str,
    key_store: SecretKeyStore,
    asynchronous: bool,
    http_client: Any,
    base_url: str | None,
    region: str | None,
) -> Any:
    if provider is Provider.BEDROCK:
        from llmtally.providers.bedrock import BedrockProvider

        return BedrockProvider(region=region).client  # the deployment's AWS credentials
    key = key_store.get(user_id, provider)
    if key is None:
        label = PROVIDER_LABELS[provider.value]
        raise AuthenticationError(
            f"no {label} API key is stored for this user", provider=provider.value, code="no_stored_key"
        )
    if provider is Provider.ANTHROPIC:
        import anthropic

        cls: Any = anthropic.AsyncAnthropic if asynchronous else anthropic.Anthropic
        return cls(api_key=key, base_url=base_url, http_client=http_client)
    if provider is Provider.OPENAI:
        import openai

        cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
        return cls(api_key=key, base_url=base_url, http_client=http_client)
    from google import genai
    from google.genai import types

    transport = {"httpx_async_client" if asynchronous else "httpx_client": http_client} if http_client else {}
    return genai.Client(api_key=key, vertexai=False, http_options=types.HttpOptions(base_url=base_url, **transport))


__all__ = [
    "REFERENCED_MEDIA_TOKENS",
    "BudgetClientGuard",
    "aclient_for_user",
    "client_for_user",
    "guard_of",
    "input_size",
    "output_limit",
]
