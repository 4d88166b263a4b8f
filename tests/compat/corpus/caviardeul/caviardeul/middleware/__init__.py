from .refresh_cookie_middleware import RefreshCookieMiddleware
from .version_middleware import VersionMiddleware

__all__ = ["RefreshCookieMiddleware", "VersionMiddleware"]
