"""Who may see the dashboard, and who may act on it.

Seeing (every request except the static assets, which hold no data):

- ``Authorization: Bearer <token>``: scripts, Prometheus scraping ``/metrics``;
- the session cookie that a login sets after checking the token (the login form, or a
  ``?token=...`` link on any page, which redirects to the same page without it; both
  redirect only where :func:`local_target` allows). The cookie is ``HttpOnly`` and
  ``SameSite=Strict``, scoped to the dashboard's path, and holds an HMAC of the token,
  never the token;
- ``Authorization: Basic`` with the ``basic_auth`` user and password (browsers ask).

With neither a token nor basic auth the dashboard is open; ``require_auth`` (which
``conveyor dashboard`` sets for any address but a loopback one) refuses to build it.

Acting (every POST, checked on the server whatever the page showed):

1. in read-only mode: 403;
2. a CSRF token must come with it (form field ``csrf`` or header ``X-CSRF-Token``). It is
   an HMAC of a key that a cross-site page cannot know, embedded in the dashboard's own
   forms; the browser's same-origin policy keeps other sites from reading it.
   SameSite=Strict alone would stop cross-site POSTs that ride on the cookie, but not
   those that ride on basic auth (browsers resend it) or on no auth at all (an open
   dashboard on 127.0.0.1), hence the token. A request with a Bearer header skips it:
   browsers never add that header by themselves;
3. a cross-site ``Origin`` or ``Sec-Fetch-Site`` header is refused too (defense in depth).

The token is compared in constant time and never logged; ``?token=`` links are
redacted from uvicorn's access log (:func:`redact_access_log`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.errors import ConfigurationError

__all__ = [
    "COOKIE",
    "Access",
    "AccessMiddleware",
    "is_loopback",
    "local_target",
    "redact_access_log",
]

COOKIE = "conveyor_dashboard"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SCOPE_KEY = "conveyor.dashboard.auth"  # how the request was authenticated

# a strict policy: every asset is ours, nothing inline runs; charts are inline SVG
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make Origin "null"
]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Access:
    """The dashboard's credentials and the checks made with them."""

    def __init__(
        self,
        token: str | None = None,
        basic_auth: str | tuple[str, str] | None = None,
        *,
        read_only: bool = False,
        require_auth: bool = False,
    ) -> None:
        if token is not None and not token.strip():
            raise ConfigurationError("the dashboard token must not be empty")
        if isinstance(basic_auth, str):
            user, sep, password = basic_auth.partition(":")
            if not sep:
                raise ConfigurationError("basic_auth must be 'user:password'")
            basic_auth = (user, password)
        if basic_auth is not None and not (basic_auth[0] and basic_auth[1]):
            raise ConfigurationError("basic_auth needs a user and a password")
        if require_auth and token is None and basic_auth is None:
            raise ConfigurationError(
                "the dashboard would be reachable from other machines without "
                "authentication: give it a token (--token or CONVEYOR_DASHBOARD_TOKEN) or "
                "--basic-auth user:password, or bind it to 127.0.0.1"
            )
        self.token = token
        self.basic = basic_auth
        self.read_only = read_only
        secret = "\0".join([token or "", *(basic_auth or ())])
        # derived from the credentials, so sessions and open forms survive a restart; an
        # open dashboard gets a random key (its forms then last as long as the process)
        self._key = (
            hashlib.sha256(b"conveyor-dashboard\0" + secret.encode()).digest()
            if self.protected
            else secrets.token_bytes(32)
        )

    def __repr__(self) -> str:  # never show the credentials
        kinds = [k for k, v in (("token", self.token), ("basic", self.basic)) if v]
        return f"<Access {'+'.join(kinds) or 'open'}{' read-only' if self.read_only else ''}>"

    @property
    def protected(self) -> bool:
        return self.token is not None or self.basic is not None

    def _mac(self, purpose: str) -> str:
        return hmac.new(self._key, purpose.encode(), hashlib.sha256).hexdigest()

    @property
    def session(self) -> str:
        """The session cookie's value: proves the token was given, does not reveal it."""
        return self._mac("session")

    @property
    def csrf(self) -> str:
        """The token every form of the dashboard carries."""
        return self._mac("csrf")

    def check_token(self, given: str) -> bool:
        return self.token is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def check_csrf(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.csrf.encode())

    def identify(self, headers: Headers) -> str | None:
        """How this request is authenticated (bearer, basic, cookie, or open when no
        credentials are set), or None."""
        if not self.protected:
            return "open"
        scheme, _, value = headers.get("authorization", "").partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self.check_token(value.strip()):
            return "bearer"
        if scheme == "basic" and self.basic is not None and self._check_basic(value.strip()):
            return "basic"
        if self.token is not None:
            cookie = SimpleCookie()
            try:
                cookie.load(headers.get("cookie", ""))
            except Exception:  # a malformed Cookie header authenticates nothing
                return None
            morsel = cookie.get(COOKIE)
            if morsel is not None and hmac.compare_digest(
                morsel.value.encode(), self.session.encode()
            ):
                return "cookie"
        return None

    def _check_basic(self, value: str) -> bool:
        assert self.basic is not None
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        # both compared, always: the time taken does not tell which one was wrong
        ok_user = hmac.compare_digest(user.encode(), self.basic[0].encode())
        ok_password = hmac.compare_digest(password.encode(), self.basic[1].encode())
        return ok_user and ok_password

    def session_cookie(self, path: str) -> str:
        """The ``Set-Cookie`` value that logs a browser in."""
        return (
            f"{COOKIE}={self.session}; Path={path}; HttpOnly; SameSite=Strict; "
            f"Max-Age={30 * 24 * 3600}"
        )

    @staticmethod
    def clear_cookie(path: str) -> str:
        return f"{COOKIE}=; Path={path}; HttpOnly; SameSite=Strict; Max-Age=0"

    def cross_site(self, headers: Headers) -> bool:
        """True when the browser says the request comes from another site."""
        if headers.get("sec-fetch-site", "same-origin") not in {"same-origin", "none"}:
            return True
        origin = headers.get("origin")
        if origin is None:  # older browsers, scripts: the CSRF token still applies
            return False
        return urlsplit(origin).netloc.lower() != headers.get("host", "").lower()


def local_target(target: str, home: str) -> str | None:
    """``target`` if a browser may be sent there after a login: a path inside the
    dashboard (under ``home``) that stays on this site and fits in a ``Location`` header.
    None for ``//evil.example/`` and ``///evil.example`` (a host, to a browser), any
    backslash (browsers read ``/\\evil.example`` as ``//evil.example``), a tab or newline
    (browsers drop them: ``/\\t/evil.example``; a CR/LF would also split the header),
    any other control character, and anything outside ASCII (not for a header).

    The one guard of both logins: the form's ``next`` field, and the path of a
    ``?token=`` link (decoded, as servers pass it).
    """
    if not target.startswith(home) or target.startswith("//") or "\\" in target:
        return None
    if not all(" " <= char <= "~" for char in target):
        return None
    return target


def route_path(scope: Scope) -> str:
    """The path inside the dashboard (without the mount prefix or root_path)."""
    path = str(scope["path"])
    root = str(scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


def base_path(scope: Scope) -> str:
    """Where the dashboard lives: ``/`` standalone, ``/conveyor/`` when mounted there."""
    return str(scope.get("root_path", "")).rstrip("/") + "/"


Unauthorized = Callable[[Scope, Receive, Send], Awaitable[None]]


class AccessMiddleware:
    """Authenticates every request (401 otherwise), handles ``?token=`` logins, and adds
    security headers. A plain ASGI middleware: the endpoints run in the request's own
    task, so contextvars behave (Starlette's BaseHTTPMiddleware did not, see STYLE.md)."""

    def __init__(
        self,
        app: ASGIApp,
        access: Access,
        unauthorized: Unauthorized,
        allowed_hosts: Sequence[str] | None = None,
    ) -> None:
        self.app = app
        self.access = access
        self.unauthorized = unauthorized
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        static = path.startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += _SECURITY_HEADERS
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        if self.allowed_hosts is not None:
            host = urlsplit("//" + Headers(scope=scope).get("host", "")).hostname or ""
            if host.lower() not in self.allowed_hosts:
                refused = PlainTextResponse("this dashboard does not serve that host name", 400)
                await refused(scope, receive, send_with_headers)
                return
        if static:
            await self.app(scope, receive, send_with_headers)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if (
            "token" in query
            and scope["method"] == "GET"
            and self.access.check_token(query["token"])
        ):
            await self._login_redirect(scope, receive, query, send_with_headers)
            return
        who = self.access.identify(Headers(scope=scope))
        if who is None and path != "/login":
            await self.unauthorized(scope, receive, send_with_headers)
            return
        scope[SCOPE_KEY] = who
        await self.app(scope, receive, send_with_headers)

    async def _login_redirect(
        self, scope: Scope, receive: Receive, query: dict[str, str], send: Send
    ) -> None:
        """A valid ``?token=`` link: set the cookie, then show the page without the token
        (so it stays out of the history, bookmarks and Referer headers). A path that
        :func:`local_target` refuses is a 400, without the cookie: no dashboard page has
        such a path, and a redirect there could leave the site."""
        del query["token"]
        target = local_target(str(scope.get("root_path", "")) + route_path(scope), base_path(scope))
        if target is None:
            refused = PlainTextResponse("not a page of this dashboard", 400)
            await refused(scope, receive, send)
            return
        # the path arrived decoded: encode it again ('?', '#', '%' and spaces included)
        location = quote(target, safe="/:@!$&'()*+,;=")
        if query:
            location += "?" + urlencode(query)
        headers: list[tuple[bytes, bytes]] = [
            (b"location", location.encode("ascii")),
            (b"set-cookie", self.access.session_cookie(base_path(scope)).encode("latin-1")),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


_TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s\"]*")


class _RedactToken(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_IN_URL.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_URL.sub(r"\1***", record.msg)
        return True


def redact_access_log(logger_name: str = "uvicorn.access") -> None:
    """Replace ``token=...`` in that logger's request lines with ``token=***`` (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _RedactToken) for f in logger.filters):
        logger.addFilter(_RedactToken())
