"""The notifier function: budget alert events → the user's Slack webhook."""
