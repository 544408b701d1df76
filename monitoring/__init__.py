"""Health checks, the probe engine, probe results and roll-ups, and incidents."""
