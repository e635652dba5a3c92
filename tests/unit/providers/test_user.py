"""SecretKeyStore caches keys briefly; LLMPreferences reads the seed's item shape; trackUsage's rule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from pydantic import SecretStr

from llmtally.budgets import Budget, BudgetAction, BudgetExceededError, BudgetStatus, SwitchTarget
from llmtally.events import Provider, UsageEvent
from llmtally.money import usd_to_nanos
from llmtally.pricing import PriceBook
from llmtally.providers import LLMPreferences, SecretKeyStore, TrackedProvider, provider_for_user
from llmtally.providers.budget import BudgetedProvider, BudgetGuard
from tests.unit.providers.conftest import OPENAI_KEY, MockAPI, fixture_json, json_reply


class FakeSecrets:
    def __init__(self) -> None:
        self.keys = {("u-1", Provider.OPENAI): SecretStr("sk-test-key-000000000000")}
        self.reads = 0

    def get_key(self, user_id: str, provider: Provider) -> SecretStr | None:
        self.reads += 1
        return self.keys.get((user_id, provider))


def test_keys_are_cached_for_the_ttl_then_read_again() -> None:
    now = [0.0]
    repo = FakeSecrets()
    store = SecretKeyStore(repository=repo, ttl_seconds=300, clock=lambda: now[0])
    assert store.get("u-1", Provider.OPENAI) == "sk-test-key-000000000000"
    now[0] = 299.0
    assert store.get("u-1", Provider.OPENAI) == "sk-test-key-000000000000"
    assert repo.reads == 1
    now[0] = 301.0
    store.get("u-1", Provider.OPENAI)
    assert repo.reads == 2
    store.invalidate("u-1", Provider.OPENAI)
    store.get("u-1", Provider.OPENAI)
    assert repo.reads == 3
    assert store.get("u-1", Provider.ANTHROPIC) is None
    assert "sk-test" not in repr(store)


def test_preferences_from_the_seed_item_and_model_choice_per_operation() -> None:
    prefs = LLMPreferences.model_validate(
        {
            "defaultProvider": "openai",
            "queryModel": "gpt-5-mini",
            "detectionModel": "gpt-5.1",
            "maxTokens": 2000,
            "temperature": 0.0,
            "enableCaching": True,
            "trackUsage": False,
        }
    )
    assert prefs.default_provider is Provider.OPENAI
    assert prefs.model_for(Provider.OPENAI, "query_generation") == "gpt-5-mini"
    assert prefs.model_for(Provider.OPENAI, "detection_rule") == "gpt-5.1"
    assert prefs.model_for(Provider.ANTHROPIC, "query_generation") is None  # not an Anthropic model
    assert LLMPreferences().default_provider is Provider.BEDROCK
    assert prefs.enable_caching is True
    assert LLMPreferences().enable_caching is False  # the response cache is opt-in


# -- trackUsage: the user's opt-out covers calls on their own key, never the deployment's ------------

BEDROCK_MODEL = "us.anthropic.claude-haiku-4-5-20251001-v1:0"


class Sink:
    """Collects what a tracked provider publishes (the publisher's `publish` contract)."""

    def __init__(self) -> None:
        self.events: list[UsageEvent] = []

    def publish(self, event: UsageEvent) -> bool:
        self.events.append(event)
        return True


class SpentGuard(BudgetGuard):
    """A budget guard whose user has used up their budget (`action` at 100 %)."""

    def __init__(self, action: BudgetAction, switch_to: SwitchTarget | None = None) -> None:
        super().__init__()
        self.budget = Budget(limit_nanos=usd_to_nanos(Decimal("1")), action=action, switch_to=switch_to)

    def status(self, user_id: str) -> BudgetStatus | None:
        return BudgetStatus(self.budget, self.budget.period(datetime.now(UTC)), spent_nanos=self.budget.limit_nanos)


class NoBudget(BudgetGuard):
    def status(self, user_id: str) -> BudgetStatus | None:
        return None


class Keys(SecretKeyStore):
    def __init__(self) -> None:
        super().__init__(repository=FakeSecrets())
        self.keys = {Provider.OPENAI: OPENAI_KEY}

    def get(self, user_id: str, provider: Provider) -> str | None:
        return self.keys.get(Provider(provider))


OPTED_OUT = {"defaultProvider": "bedrock", "queryModel": BEDROCK_MODEL, "trackUsage": False}


@pytest.fixture
def bedrock() -> Iterator[tuple[Any, Stubber]]:
    runtime = boto3.client("bedrock-runtime", region_name="us-east-1")
    with Stubber(runtime) as stub:
        yield runtime, stub
        stub.assert_no_pending_responses()


def test_a_deployment_paid_call_is_metered_even_when_the_user_turned_tracking_off(
    bedrock: tuple[Any, Stubber], price_book: PriceBook
) -> None:
    # Given a user on Bedrock (the deployment's AWS credentials pay) with trackUsage off
    runtime, stub = bedrock
    stub.add_response("converse", fixture_json("bedrock", "converse_plain.json"))
    sink = Sink()
    provider = provider_for_user(
        "u-1", preferences=OPTED_OUT, publisher=sink, budget_guard=NoBudget(), client=runtime, price_book=price_book
    )
    # When the service calls it
    response = provider.generate("count")
    # Then the call is metered all the same, under the user
    assert isinstance(provider, BudgetedProvider)
    (event,) = sink.events
    assert (event.provider, event.user_id, event.model) == (Provider.BEDROCK, "u-1", BEDROCK_MODEL)
    assert event.output_tokens == response.usage.output_tokens == 200


def test_a_deployment_paid_call_obeys_the_budget_when_the_user_turned_tracking_off(
    bedrock: tuple[Any, Stubber], price_book: PriceBook
) -> None:
    # Given a user on Bedrock with trackUsage off whose `block` budget is used up
    runtime, _ = bedrock  # no response queued: any request would fail the Stubber
    sink = Sink()
    provider = provider_for_user(
        "u-1",
        preferences=OPTED_OUT,
        publisher=sink,
        budget_guard=SpentGuard(BudgetAction.BLOCK),
        client=runtime,
        price_book=price_book,
    )
    # When the service calls it; then the budget refuses the call before Bedrock is reached
    with pytest.raises(BudgetExceededError):
        provider.generate("count")
    assert sink.events == []


def test_a_budget_switch_from_a_deployment_paid_call_is_metered_too(price_book: PriceBook) -> None:
    # Given a user on Bedrock with trackUsage off, whose used-up budget switches to their OpenAI key
    sink = Sink()
    target = SwitchTarget(provider=Provider.OPENAI, model="gpt-5-mini")
    provider = provider_for_user(
        "u-1",
        preferences=OPTED_OUT,
        key_store=Keys(),
        publisher=sink,
        budget_guard=SpentGuard(BudgetAction.SWITCH, target),
        price_book=price_book,
    )
    assert isinstance(provider, BudgetedProvider)
    # When the budget routes a call to the switch target
    switched, model = provider._target(target)
    # Then the target is built tracked (a call the budget routes is always metered: it must see it)
    assert isinstance(switched, TrackedProvider)
    assert (switched.inner.provider, switched.user_id, model) == ("openai", "u-1", "gpt-5-mini")
    assert switched.publisher is sink


def test_a_call_on_the_users_own_key_is_not_metered_when_they_turned_tracking_off(price_book: PriceBook) -> None:
    # Given a user on OpenAI with their own key and trackUsage off
    api, sink = MockAPI([json_reply(fixture_json("openai", "chat_plain.json"))]), Sink()
    provider = provider_for_user(
        "u-1",
        preferences={"defaultProvider": "openai", "queryModel": "gpt-5-mini", "trackUsage": False},
        key_store=Keys(),
        publisher=sink,
        budget_guard=SpentGuard(BudgetAction.BLOCK),
        http_client=api.client(),
        price_book=price_book,
    )
    # When the service calls it; then it is their call on their bill: neither metered nor budgeted
    provider.generate("count")
    assert not isinstance(provider, BudgetedProvider | TrackedProvider)
    assert len(api.requests) == 1
    assert sink.events == []
    # And with trackUsage on the same call is metered and obeys the budget
    tracked = provider_for_user(
        "u-1",
        preferences={"defaultProvider": "openai", "queryModel": "gpt-5-mini"},
        key_store=Keys(),
        publisher=sink,
        budget_guard=SpentGuard(BudgetAction.BLOCK),
        http_client=api.client(),
        price_book=price_book,
    )
    with pytest.raises(BudgetExceededError):
        tracked.generate("count")


def test_the_rule_is_named_on_the_preferences() -> None:
    prefs = LLMPreferences(trackUsage=False)
    assert prefs.tracks(Provider.BEDROCK) is True  # the deployment pays: always
    assert [prefs.tracks(p) for p in (Provider.ANTHROPIC, Provider.OPENAI, Provider.GOOGLE)] == [False] * 3
    assert all(LLMPreferences().tracks(p) for p in Provider)
