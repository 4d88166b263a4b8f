"""tkq_app package."""
