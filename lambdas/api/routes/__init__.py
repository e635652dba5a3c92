"""One Powertools `Router` per area: usage, settings, models."""
