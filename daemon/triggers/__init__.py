"""Triggers: what starts executions besides a person (schedules, webhooks, flows, files)."""
