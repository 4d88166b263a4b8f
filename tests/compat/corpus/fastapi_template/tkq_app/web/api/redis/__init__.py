"""Redis API."""
from tkq_app.web.api.redis.views import router

__all__ = ['router']
