"""WEB API for tkq_app."""
