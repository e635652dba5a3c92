"""One construct per capability: ingestion, aggregation, api, hosting, producers, monitoring, functions."""
