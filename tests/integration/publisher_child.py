"""Run as a child process by tests/integration/test_publisher.py: publish, then simply exit.

    python tests/integration/publisher_child.py QUEUE_URL COUNT background|lambda

Publishes COUNT events to the SQS queue and returns normally: no flush, no close, and the
publisher goes out of scope. In background mode the batch wait is far longer than the process
lives; in Lambda mode nothing is sent without a flush — so only the publisher's exit flush can
deliver the last events. Prints the event ids (one JSON list).
"""

from __future__ import annotations

import json
import sys

from llmtally.events import UsageEvent
from llmtally.publisher import UsagePublisher


def main(queue_url: str, count: int, mode: str) -> None:
    publisher = UsagePublisher.for_sqs(queue_url, background=mode == "background", max_batch_wait=600, exit_timeout=20)
    events = [
        UsageEvent(
            user_id="child-user",
            provider="openai",
            model="gpt-4o",
            operation_type="conversation",
            input_tokens=100 + i,
            output_tokens=10,
            latency_ms=5,
        )
        for i in range(count)
    ]
    for event in events:
        publisher.publish(event)
    print(json.dumps([event.event_id for event in events]))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
