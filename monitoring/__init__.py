"""Health checks, probe results and incidents: built by the monitoring issue (#4)."""
