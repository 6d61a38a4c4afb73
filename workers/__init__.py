"""The worker processes: Dramatiq actors for enrich, deliver and reconcile."""
