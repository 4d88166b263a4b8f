"""Redis service."""
