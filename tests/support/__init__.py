"""Helpers several test packages share (no fixtures: those live in the conftest files)."""
