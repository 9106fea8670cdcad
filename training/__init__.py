"""Offline training library for the California housing service (no side effects at import)."""
