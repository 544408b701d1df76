"""The overview's API: search, metrics and the change feed."""
