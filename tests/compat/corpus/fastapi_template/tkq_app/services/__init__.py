"""Services for tkq_app."""
