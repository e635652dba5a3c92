"""Refused bodies are kept redacted and bounded: every secret shape the redactor knows is removed,
wherever it sits in the kept 16 KiB, and the work is bounded by what is kept, never by the body."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmtally import redaction
from llmtally.events import SECRET_KEY_NAME, SECRET_VALUE
from llmtally.ingest import Ingestor, RejectReason, redact
from llmtally.pricing import PriceBook
from llmtally.repositories.rejects import MAX_STORED_BODY_BYTES
from tests.support.bad_inputs import valid_detail
from tests.unit.test_ingest import MemoryRegistry, MemoryRejects, MemoryUsage

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)

#: One of every key shape `events.SECRET_VALUE` knows (fake keys, right shapes).
KEY_SHAPES = {
    "anthropic": "sk-ant-api03-Abc123_def456-GHI789jklMNO",
    "openai project": "sk-proj-Zyx987wvu654TSR321qpoNML",
    "openai legacy": "sk-Qwertyuiop1234567890Asdf",
    "google": "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW",
    "aws access key": "AKIAIOSFODNN7EXAMPLE",
    "aws session key": "ASIAY34FZKBOKMUTVV7A",
    "slack bot": "xoxb-123456789012-abcdefABCDEF",
    "slack user": "xoxp-987654321098-zyxwvuZYXWVU",
    "slack app": "xoxa-2-11112222-3333QQQQ",
}
#: Member names `events.SECRET_KEY_NAME` knows, as producers spell them; the values have no key shape.
SECRET_MEMBERS = {
    "api_key": "plain-value-api-underscore",
    "apiKey": "plain-value-api-camel",
    "api-key": "plain-value-api-dash",
    "x-api-key": "plain-value-x-api",
    "secret": "plain-value-secret",
    "client_secret": "plain-value-client",
    "password": "plain-value-password",
    "passwd": "plain-value-passwd",
    "token": "plain-value-token",
    "access_token": "plain-value-access",
    "Authorization": "Bearer plain-value-bearer",
    "credential": "plain-value-credential",
    "AWS_CREDENTIALS": "plain-value-aws-credentials",
    'esc\\"aped_token': 'plain-value-with-\\"-escapes',
}


def _ingestor() -> tuple[Ingestor, MemoryRejects]:
    rejects = MemoryRejects()
    ingestor = Ingestor(MemoryUsage(), rejects, MemoryRegistry(), PriceBook(), ttl_days=90, clock=lambda: NOW)  # type: ignore[arg-type]
    return ingestor, rejects


def _stored(body: str) -> dict[str, Any]:
    ingestor, rejects = _ingestor()
    outcome = ingestor.ingest(body, message_id="m-secret")
    assert outcome.status == "rejected", outcome
    (record,) = rejects.records
    return record


def test_every_key_shape_and_secret_member_is_redacted_in_a_16_kib_reject() -> None:
    # Given a refused event of about 16 KiB holding every key shape and every secret-named member,
    # spread from its start to its end
    detail = valid_detail(NOW, input_tokens=-1)  # refused: a contract violation
    raw_members = ", ".join(f'"{name}": "{value}"' for name, value in SECRET_MEMBERS.items())
    filler = "x" * 750
    shapes = ", ".join(f'"note{i}": "{filler} {key} {filler}"' for i, key in enumerate(KEY_SHAPES.values()))
    body = json.dumps(detail)[:-1] + f", {raw_members}, {shapes}}}"
    assert 14 * 1024 < len(body.encode()) <= MAX_STORED_BODY_BYTES
    # When it is ingested
    record = _stored(body)
    stored = record["body"]
    # Then no key and no secret member's value survives, and the rest of the body does
    for key in KEY_SHAPES.values():
        assert key not in stored
        assert key[6:] not in stored
    for value in SECRET_MEMBERS.values():
        assert value not in stored
    assert stored.count("[REDACTED]") == len(KEY_SHAPES) + len(SECRET_MEMBERS)
    assert '"user_id": "user-1"' in stored
    assert record["body_truncated"] is False
    # And nothing key-shaped is left by the regex the contract itself refuses
    assert not SECRET_VALUE.search(stored)


@pytest.mark.parametrize("name", list(KEY_SHAPES), ids=list(KEY_SHAPES))
@pytest.mark.parametrize("offset", [-40, -10, -3, 0, 3])
def test_a_key_cut_by_the_16_kib_bound_leaves_no_part_of_itself(name: str, offset: int) -> None:
    # Given a key that straddles the kept bound (starting a few bytes before or after it)
    key = KEY_SHAPES[name]
    head = '{"user_id": "user-1", "note": "'
    pad = "y" * (MAX_STORED_BODY_BYTES + offset - len(head))
    body = head + pad + key + '"}' + " " * 40_000
    # When it is refused and kept
    record = _stored(body)
    # Then the kept prefix holds no fragment of the key beyond its public prefix
    stored = record["body"]
    assert len(stored.encode()) <= MAX_STORED_BODY_BYTES
    assert record["body_truncated"] is True
    tail = key[len(key) // 2 :]
    assert tail[:6] not in stored


@pytest.mark.parametrize("offset", [-40, -5, 0, 5])
def test_a_secret_member_cut_by_the_bound_is_redacted(offset: int) -> None:
    # Given a secret member whose value is cut open by the kept bound
    head = '{"user_id": "user-1", "pad": "' + "p" * (MAX_STORED_BODY_BYTES - 200) + '", "password": "'
    value = "hunter2-" + "q" * 400 + "-end"
    body = head + value + '"}'
    body = body[:MAX_STORED_BODY_BYTES] + body[MAX_STORED_BODY_BYTES:] + " " * (2000 + offset)
    # When it is refused and kept
    stored = _stored(body)["body"]
    # Then no part of the value is kept
    assert "hunter2" not in stored
    assert "qqqq" not in stored


def test_a_256_kib_body_of_repeated_token_is_rejected_with_bounded_work(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the body that made the old pattern backtrack quadratically: an open string of "token"s
    body = '"' + "token" * (256 * 1024 // 5 - 1)
    assert len(body) > 255 * 1024
    seen: list[int] = []
    real = redaction.redact

    def spy(text: str) -> str:
        seen.append(len(text))
        return real(text)

    monkeypatch.setattr(redaction, "redact", spy)
    # When it is ingested
    record = _stored(body)
    # Then it is rejected, and the redactor only ever saw the kept bound plus its margin
    assert record["reason"] is RejectReason.MALFORMED_JSON
    assert seen
    assert max(seen) <= MAX_STORED_BODY_BYTES + redaction.WINDOW_MARGIN_CHARS
    assert len(record["body"].encode()) <= MAX_STORED_BODY_BYTES
    assert record["body_truncated"] is True
    assert record["body_bytes"] == len(body)


def test_the_string_tokenizer_visits_each_character_once() -> None:
    # A regex-engine-independent check of linearity: the string tokens found in any text are
    # disjoint and in order, so the per-token work (one name check, one gap check) sums to O(n).
    text = '"' + "token" * 2000 + '" : "a\\"b" "open ' + "\\" * 3 + "token" * 100
    tokens = list(redaction._STRING.finditer(text))
    assert all(a.end() <= b.start() for a, b in itertools.pairwise(tokens))
    assert sum(len(t.group()) for t in tokens) <= len(text)
    assert tokens[-1].end() == len(text)  # the open string at the end is one token, not a retry per quote


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
NAMES = st.sampled_from(["model", "note", "input_tokens", "api_key", "apiKey", "token", "Secret", "passwd", "x"])


@given(
    st.recursive(
        JSON_SCALARS,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(NAMES | st.text(max_size=8), children),
        max_leaves=20,
    )
)
def test_redaction_of_json_keeps_its_structure_and_blanks_exactly_the_secret_strings(value: Any) -> None:
    # Given any JSON document; when it is redacted; then it is still the same JSON, except that
    # every string value of a secret-named member is "[REDACTED]" and no key shape is left
    text = json.dumps(value)
    out = json.loads(redact(text))

    def expected(v: Any) -> Any:
        if isinstance(v, dict):
            return {
                SECRET_VALUE.sub("[REDACTED]", k): (
                    "[REDACTED]" if isinstance(item, str) and SECRET_KEY_NAME.search(json.dumps(k)) else expected(item)
                )
                for k, item in v.items()
            }
        if isinstance(v, list):
            return [expected(item) for item in v]
        if isinstance(v, str):
            return json.loads(SECRET_VALUE.sub("[REDACTED]", json.dumps(v)))
        return v

    assert out == expected(value)


def test_redact_leaves_an_ordinary_event_alone() -> None:
    body = json.dumps(valid_detail(NOW, metadata={"max_tokens": 1000, "note": "token bucket"}))
    assert redact(body) == body
