"""`python -m llmtally.schema` prints the usage event's JSON Schema (kept in docs/)."""

from __future__ import annotations

import json

from llmtally.events import usage_event_json_schema


def main() -> None:
    print(json.dumps(usage_event_json_schema(), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
