from .article import CustomArticleAdmin, DailyArticleAdmin
from .user import UserAdmin

__all__ = ["CustomArticleAdmin", "DailyArticleAdmin", "UserAdmin"]
