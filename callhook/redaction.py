"""Hiding secrets in values shown to people: `check-config`, logs, error messages.

A URL can carry a secret in two places that are not its host: the user info
(`redis://:password@host`, `https://token@host`) and the query string
(`redis://host/0?password=...`, capability links `https://host/hook?token=...`). Both are
hidden in every URL shown; scheme, host, port and path stay readable.

A Redis URL's path is only a database number (or a Sentinel service name and database),
never an `@`: there the user info runs to the *last* `@`, so a password holding an
unescaped `/`, `?` or `#` is still hidden whole (`redis+sentinel://:pa/ss@h1,h2/primary`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HIDDEN = "**********"
#: schemes whose URLs are Redis addresses (`redis`, `rediss`, `redis+sentinel`; `unix`)
_REDIS_SCHEMES = ("redis", "unix")


def redact_url(url: str) -> str:
    """`url` with its user info and every query value replaced by `**********`.

    The user name stays when a password follows it (the password is the secret); a user
    info with no password is often a token itself, so it is hidden whole. A URL with
    neither is returned untouched (re-joining would turn `sqlite:////abs` into `sqlite://abs`).
    """
    scheme, separator, rest = url.partition("://")
    if separator and scheme.lower().startswith(_REDIS_SCHEMES) and "@" in rest:
        userinfo, _, hostpart = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        shown = f"{user}:{HIDDEN}" if colon and user and "/" not in user else HIDDEN
        return f"{scheme}://{shown}@{_redact_hostpart(hostpart)}"
    return _redact_parsed(url)


def _redact_hostpart(hostpart: str) -> str:
    """What follows the user info of a Redis URL, with its query values hidden."""
    base, question, query = hostpart.partition("?")
    return f"{base}?{_redact_query(query)}" if question else hostpart


def _redact_query(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(key, HIDDEN) for key, _ in pairs], safe="*") if pairs else HIDDEN


def _redact_parsed(url: str) -> str:
    try:
        parts = urlsplit(url)
        has_userinfo = "@" in parts.netloc
        password = parts.password
    except ValueError:  # e.g. an unbalanced IPv6 bracket: show nothing of it
        return HIDDEN
    if not has_userinfo and not parts.query:
        return url
    netloc, query = parts.netloc, parts.query
    if has_userinfo:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        shown = f"{user}:{HIDDEN}" if password is not None and user else HIDDEN
        netloc = f"{shown}@{hostport}"
    if query:
        query = _redact_query(query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def looks_like_url(value: str) -> bool:
    """True for `scheme://...` strings (what `redact_urls` treats as a URL)."""
    scheme, separator, _ = value.partition("://")
    return bool(separator) and scheme.replace("+", "").replace("-", "").isalnum()


def redact_urls(value: Any) -> Any:
    """`value` (plain JSON-like data) with `redact_url` applied to every URL string in it."""
    if isinstance(value, str):
        return redact_url(value) if looks_like_url(value) else value
    if isinstance(value, dict):
        return {key: redact_urls(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_urls(item) for item in value]
    return value
