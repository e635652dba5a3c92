"""Allowed web origins (CORS and sign-in callbacks): the host is matched whole, never as a prefix."""

from __future__ import annotations

import pytest

from llmtally.api.config import web_origin

ALLOWED = [
    ("https://llm.example.com", "https://llm.example.com"),
    ("https://llm.example.com:8443", "https://llm.example.com:8443"),
    ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
    ("HTTPS://LLM.Example.COM", "https://llm.example.com"),
    ("http://localhost", "http://localhost"),
    ("http://localhost:5173", "http://localhost:5173"),
    ("http://127.0.0.1:5173", "http://127.0.0.1:5173"),
    ("http://[::1]:5173", "http://[::1]:5173"),
    (" http://localhost:5173 ", "http://localhost:5173"),
]
REFUSED = [
    "http://localhost.evil.com",
    "http://localhost.evil.com:5173",
    "http://localhost:5173.evil.com",
    "http://localhost@evil.com",
    "http://localhostevil.com",
    "http://127.0.0.1.evil.com",
    "http://127.0.0.2:5173",
    "http://example.com",
    "https://example.com/",
    "https://example.com/app",
    "https://example.com?x=1",
    "https://example.com#top",
    "https://user:pass@example.com",
    "https://*.example.com",
    "*",
    "null",
    "https://-bad.example.com",
    "https://bad-.example.com",
    "https://a..example.com",
    "https://example.com:0",
    "https://example.com:65536",
    "https://example.com:080",
    "ftp://example.com",
    "https://exa mple.com",
    "",
]


@pytest.mark.parametrize(("origin", "normalised"), ALLOWED)
def test_https_origins_and_the_loopback_hosts_are_allowed(origin: str, normalised: str) -> None:
    assert web_origin(origin) == normalised


@pytest.mark.parametrize("origin", REFUSED)
def test_anything_else_is_refused_with_the_rule(origin: str) -> None:
    # Given an origin that is not exactly https://host[:port] or a loopback http origin
    # Then it is refused, the message saying what is allowed
    with pytest.raises(ValueError, match=r"https://host\[:port\] or http://localhost"):
        web_origin(origin)
