from .csrf import set_csrf_token
from .custom_article import create_custom_article, get_custom_article
from .daily_article import (
    get_archived_article,
    get_current_article,
    get_daily_article_stats,
    list_archived_articles,
)
from .score import post_article_score
from .user import delete_current_user, get_current_user, login

__all__ = [
    # Custom articles
    "create_custom_article",
    "get_custom_article",
    # Daily articles
    "get_archived_article",
    "get_current_article",
    "list_archived_articles",
    "get_daily_article_stats",
    # Score
    "post_article_score",
    # Users
    "get_current_user",
    "delete_current_user",
    "login",
    # CSRF
    "set_csrf_token",
]
