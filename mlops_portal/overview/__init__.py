"""The top floor: Today, dashboards, search, notifications and the change feed. It reads
every feature app; no app imports it (import-linter keeps it so)."""
