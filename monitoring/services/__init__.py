"""Every state change of monitoring: checks (and the probe automation) and incidents."""
