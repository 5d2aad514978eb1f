"""Crafter, the default environment plugin."""
