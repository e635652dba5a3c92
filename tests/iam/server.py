"""The IAM tier's emulator: a moto server in its own process, with a request log.

`python -m tests.iam.server PORT LOG` serves moto on 127.0.0.1:PORT (as `ThreadedMotoServer` does)
behind a WSGI layer that appends one JSON line per AWS request to LOG: the caller's access key,
the service (from the SigV4 credential scope), the operation (`X-Amz-Target`), the JSON request
body, and the answer's status and error type. The tier reads that log to know every call a
function made and whether moto's IAM enforcement refused it.

Its own process, because moto keeps IAM enforcement in module globals
(`moto.settings.INITIAL_NO_AUTH_ACTION_COUNT`, `ActionAuthenticatorMixin.request_count`): switched
on in the test process, it would also govern the per-worker server every other test uses.
Enforcement starts off (provisioning), and the tier switches it on with `POST /moto-api/reset-auth`.
"""

from __future__ import annotations

import io
import json
import re
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/[^/]+/([^/]+)/")

StartResponse = Callable[..., Any]
Wsgi = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class RequestLog:
    """A WSGI layer that records each signed AWS request and its answer."""

    def __init__(self, app: Wsgi, path: str) -> None:
        self._app = app
        self._path = path
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        match = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        if match is None or environ.get("PATH_INFO", "").startswith("/moto-api"):
            return self._app(environ, start_response)
        status: list[str] = []

        def capture(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(status_line)
            return start_response(status_line, headers, exc_info) if exc_info else start_response(status_line, headers)

        chunks = list(self._app(environ, capture))
        answer = b"".join(chunks)
        code = int(status[0].split()[0]) if status else 0
        entry = {
            "access_key": match.group(1),
            "service": match.group(2),
            "target": environ.get("HTTP_X_AMZ_TARGET", ""),
            "path": environ.get("PATH_INFO", ""),
            "query": environ.get("QUERY_STRING", ""),
            "body": _json(body),
            "status": code,
            "error": _error_type(answer) if code >= 400 else None,
        }
        with self._lock, open(self._path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
        return [answer]


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else {}
    except ValueError:
        return {"_raw": body.decode("utf-8", "replace")[:2000]}


def _error_type(answer: bytes) -> str:
    text = answer.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        found = re.search(r"<Code>([^<]+)</Code>", text)
        return found.group(1) if found else text[:200]
    kind = str(parsed.get("__type") or parsed.get("code") or parsed.get("Code") or "")
    message = str(parsed.get("message") or parsed.get("Message") or "")
    return f"{kind.rsplit('#', 1)[-1]}: {message}"[:400]


def main(port: int, log_path: str) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = RequestLog(DomainDispatcherApplication(create_backend_app), log_path)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
