"""API for checking project status."""
from tkq_app.web.api.monitoring.views import router

__all__ = ['router']
