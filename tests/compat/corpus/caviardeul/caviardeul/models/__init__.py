from .article import CustomArticle, DailyArticle
from .score import DailyArticleScore
from .user import User

__all__ = [
    "CustomArticle",
    "DailyArticle",
    "DailyArticleScore",
    "User",
]
