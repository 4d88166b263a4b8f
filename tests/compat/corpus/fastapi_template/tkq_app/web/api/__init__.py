"""tkq_app API package."""
