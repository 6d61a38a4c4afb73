"""The vendor registry (being assembled: vendors land in parallel)."""
