"""Who may use the console and the JSON API: one token, `[console] token`.

The API takes it as `Authorization: Bearer <token>`. The console's login form takes it once
and sets a session cookie: signed (itsdangerous, with a key derived from the token, so a
new token ends every session), HttpOnly, SameSite=Strict, Secure on https, scoped to
/console and expiring after `[console] session_hours`. Each console form carries a CSRF
token bound to the session, checked on every POST. Every comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from callhook.config import ConsoleConfig

COOKIE = "callhook_console"
COOKIE_PATH = "/console"


class Access:
    def __init__(self, console: ConsoleConfig) -> None:
        if console.token is None:
            raise ValueError("the console is off: [console] token is not set")
        self._token = console.token.get_secret_value().encode()
        self.max_age_s = int(console.session_hours * 3600)
        self._sessions = URLSafeTimedSerializer(
            self._derive(b"session cookie"), salt="callhook-console"
        )
        self._csrf_key = self._derive(b"csrf")

    def _derive(self, purpose: bytes) -> bytes:
        return hmac.new(self._token, b"callhook console " + purpose, hashlib.sha256).digest()

    def token_matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._token)

    def bearer_matches(self, request: Request) -> bool:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(given.strip())

    def session(self, request: Request) -> str | None:
        """The session id of a valid, unexpired login cookie, else None."""
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        try:
            session = self._sessions.loads(cookie, max_age=self.max_age_s)
        except BadSignature:  # also SignatureExpired
            return None
        return session if isinstance(session, str) else None

    def start_session(self, request: Request, response: Response) -> None:
        response.set_cookie(
            COOKIE,
            self._sessions.dumps(secrets.token_hex(16)),
            max_age=self.max_age_s,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def end_session(self, response: Response) -> None:
        response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")

    def csrf_token(self, session: str) -> str:
        return hmac.new(self._csrf_key, session.encode(), hashlib.sha256).hexdigest()

    def csrf_matches(self, session: str, given: str) -> bool:
        return hmac.compare_digest(self.csrf_token(session).encode(), given.encode())
