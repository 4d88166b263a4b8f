from .daily_article import check_upcoming_daily_article

__all__ = [
    "check_upcoming_daily_article",
]
