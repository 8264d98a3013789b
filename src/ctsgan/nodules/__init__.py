"""nodules."""
