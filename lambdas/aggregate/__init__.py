"""The aggregate function: DynamoDB stream batches of raw-entry INSERTs → rollups, exactly once."""
