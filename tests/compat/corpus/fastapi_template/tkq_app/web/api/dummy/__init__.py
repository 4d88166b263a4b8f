"""Dummy model API."""
from tkq_app.web.api.dummy.views import router

__all__ = ['router']
