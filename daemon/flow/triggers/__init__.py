"""Trigger and condition types: one module per family."""
