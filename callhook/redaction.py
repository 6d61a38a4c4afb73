"""Hiding secrets in values shown to people: `check-config`, logs, error messages.

A URL can carry a secret in two places that are not its host: the user info
(`redis://:password@host`, `https://token@host`) and the query string
(`redis://host/0?password=...`, capability links `https://host/hook?token=...`). Both are
hidden in every URL shown; scheme, host, port and path stay readable.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HIDDEN = "**********"


def redact_url(url: str) -> str:
    """`url` with its user info and every query value replaced by `**********`.

    The user name stays when a password follows it (the password is the secret); a user
    info with no password is often a token itself, so it is hidden whole. A URL with
    neither is returned untouched (re-joining would turn `sqlite:////abs` into `sqlite://abs`).
    """
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
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(key, HIDDEN) for key, _ in pairs], safe="*") if pairs else HIDDEN
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
