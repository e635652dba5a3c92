"""The ingest function: SQS batches of usage events → raw entries (or rejects)."""
