"""A small JSON-over-HTTPS client for the providers' admin APIs (stdlib `urllib`: nothing added to a Lambda).

- Pagination: the OpenAI and Anthropic admin reports page the same way — `has_more`, and a
  `next_page` cursor sent back as `page` — `pages()` follows it, refusing a repeated cursor and
  stopping after `max_pages` (a report can never loop or grow without bound).
- Rate limits: HTTP 429 waits for `Retry-After` (seconds or an HTTP date, at most `max_wait_s`),
  then retries; 5xx, timeouts and network errors retry with exponential backoff; after
  `max_attempts` the request fails with `BillingSourceError(retryable=True)`. Any other 4xx fails at
  once (`retryable=False`): a refused admin key does not get better by asking again.
- Bounded: a response larger than `max_bytes` is refused; JSON numbers are read as `Decimal`
  (OpenAI's cost amounts are JSON numbers: no float on the way to nano-USD).
- Secrets: the admin key is only ever in a request header. Redirects are not followed (they would
  carry the header elsewhere); errors say the endpoint's path and the HTTP status or the error's
  class, never a header, a URL's query or the body.
"""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final

from llmtally.errors import LLMTallyError

USER_AGENT: Final = "llmtally-reconcile"
DEFAULT_TIMEOUT_S: Final = 30.0
DEFAULT_MAX_ATTEMPTS: Final = 5
DEFAULT_MAX_PAGES: Final = 500
DEFAULT_MAX_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_WAIT_S: Final = 60.0

Params = Sequence[tuple[str, str]]


class BillingSourceError(LLMTallyError):
    """A billing report could not be read. The message names the endpoint and the status, nothing else."""

    def __init__(
        self, message: str, *, status: int | None = None, retryable: bool = False, wait_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        #: How long the provider asked us to wait (`Retry-After`), if it did.
        self.wait_s = wait_s


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


def retry_after_seconds(value: str | None, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """`Retry-After` as seconds: an integer, or an HTTP date (RFC 9110); None if absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


class AdminApiClient:
    """GET JSON from one admin API with the key in `headers` (built per request, never stored in an error)."""

    def __init__(
        self,
        base_url: str,
        headers: Callable[[], Mapping[str, str]],
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_pages: int = DEFAULT_MAX_PAGES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("https", "http") or not parsed.netloc:
            raise ValueError("an admin API base URL is http(s)://host[:port]")
        self._base = base_url.rstrip("/")
        self._headers = headers
        self._timeout = timeout_s
        self._max_attempts = max_attempts
        self._max_pages = max_pages
        self._max_bytes = max_bytes
        self._max_wait = max_wait_s
        self._backoff = backoff_s
        self._sleep = sleep
        self._opener = urllib.request.build_opener(_NoRedirect())
        #: Requests made and 429s waited for (the job's metrics).
        self.requests = 0
        self.throttled = 0

    def get(self, path: str, params: Params) -> dict[str, Any]:
        url = f"{self._base}{path}?{urllib.parse.urlencode(list(params))}"
        for attempt in range(1, self._max_attempts + 1):
            wait: float | None
            try:
                return self._once(path, url)
            except BillingSourceError as exc:
                if not exc.retryable or attempt == self._max_attempts:
                    raise
                wait = exc.wait_s
                if wait is None:
                    wait = min(self._backoff * 2 ** (attempt - 1), self._max_wait)
            self._sleep(min(wait, self._max_wait))
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, path: str, url: str) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 - the base URL's scheme is checked in __init__
            url,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT, **self._headers()},
            method="GET",
        )
        self.requests += 1
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                status = int(response.status)
                body = response.read(self._max_bytes + 1)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
            retry_after = exc.headers.get("Retry-After") if exc.headers is not None else None
            exc.close()
            raise _status_error(path, status, retry_after, self) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            # `from None`: the chained error's text could name the host or the query.
            raise BillingSourceError(f"{path}: unreachable ({type(reason).__name__})", retryable=True) from None
        if not 200 <= status < 300:
            raise _status_error(path, status, None, self)
        if len(body) > self._max_bytes:
            raise BillingSourceError(f"{path}: response larger than {self._max_bytes} bytes")
        try:
            document = json.loads(body, parse_float=Decimal)
        except ValueError:
            raise BillingSourceError(f"{path}: response is not JSON", retryable=True) from None
        if not isinstance(document, dict):
            raise BillingSourceError(f"{path}: response is not a JSON object")
        return document

    def pages(self, path: str, params: Params) -> Iterator[dict[str, Any]]:
        """Every page of a paginated report (`has_more` / `next_page` → `page`)."""
        seen: set[str] = set()
        cursor: str | None = None
        for _ in range(self._max_pages):
            page = self.get(path, [*params, *([("page", cursor)] if cursor else [])])
            yield page
            if page.get("has_more") is not True:
                return
            next_page = page.get("next_page")
            if not isinstance(next_page, str) or not next_page or next_page in seen:
                raise BillingSourceError(f"{path}: has_more without a new next_page cursor")
            seen.add(next_page)
            cursor = next_page
        raise BillingSourceError(f"{path}: more than {self._max_pages} pages")

    def buckets(self, path: str, params: Params, *, source: str) -> Iterator[dict[str, Any]]:
        """Every time bucket of a paginated report: both admin APIs page `{"data": [bucket, …], …}`."""
        for page in self.pages(path, params):
            data = page.get("data")
            if not isinstance(data, list):
                raise BillingSourceError(f"{source}: a page without a data list")
            yield from (bucket for bucket in data if isinstance(bucket, dict))


# -- reading the reports' fields (shared by the OpenAI and Anthropic sources) ---------------------


def report_int(value: Any, source: str) -> int:
    """A report's token count: an integer, absent as 0; anything else is a `BillingSourceError`."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise BillingSourceError(f"{source}: a token count that is not an integer")
    return value


def report_key_id(value: Any) -> str | None:
    """The provider's API key id a usage line was billed under (at most 128 characters), or None."""
    return str(value)[:128] if isinstance(value, str) and value else None


def _status_error(path: str, status: int, retry_after: str | None, client: AdminApiClient) -> BillingSourceError:
    if status == 429:
        client.throttled += 1
        return BillingSourceError(
            f"{path}: rate limited (HTTP 429)", status=status, retryable=True, wait_s=retry_after_seconds(retry_after)
        )
    if status in (401, 403):
        return BillingSourceError(
            f"{path}: the admin key was refused (HTTP {status}); store a valid admin key", status=status
        )
    return BillingSourceError(f"{path}: HTTP {status}", status=status, retryable=status >= 500 or status == 408)
