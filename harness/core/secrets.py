"""Keep secrets out of every line we print, log, record or report.

Secrets reach text through URLs (``https://user:password@host/...``, ``?api_key=...&token=...``) and
through values we were handed (an API key read from the environment). :func:`redact` removes both kinds
from any text; :func:`redact_url` is the same for one URL. :func:`register_secret` adds a value (such
as the judge's API key) that must never appear verbatim anywhere, :func:`register_url` the credentials
inside a URL (so they stay masked where they show up without it, e.g. percent-decoded), and
:class:`RedactingFilter` applies :func:`redact` to every log record. :func:`split_query` takes a base URL's
query string (often a credential) off it, to be sent as query parameters rather than inside the path.
"""

from __future__ import annotations

import logging
import re

#: query/fragment parameters whose values are credentials
_SECRET_PARAMS = (r"(?:api[_-]?key|apikey|key|token|access[_-]?token|auth|authorization|password|passwd|pwd|secret"
                  r"|sig|signature|client[_-]?secret|sas|code)")
_PARAM = re.compile(rf"(?i)([?&;#]{_SECRET_PARAMS}=)[^&;#\s'\"<>]*")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"<>]+@")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_BASIC = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?basic\s+)[A-Za-z0-9+/=]+")
MASK = "***"
_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value (at least 4 characters) so that :func:`redact` masks it wherever it appears."""
    if value and len(value) >= 4:
        _registered.add(value)


def register_url(url: str | None) -> None:
    """Register the credentials a URL carries (userinfo password, credential parameter values), raw and decoded."""
    if not url:
        return
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    values = [parts.password or ""] if parts.password else []
    for match in _PARAM.finditer(url):
        values.append(match.group(0)[len(match.group(1)):])
    for value in values:
        register_secret(value)
        register_secret(unquote(value))


def split_query(url: str) -> tuple[str, dict[str, str]]:
    """A base URL without its query string, and the query's parameters.

    For clients that append paths to a base URL: the query (often a credential, ``?api_key=...``) must be
    sent as query parameters of every request, not end up inside the path.
    """
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="")), dict(parse_qsl(parts.query, keep_blank_values=True))


def redact(text: object) -> str:
    """``text`` with URL userinfo, credential query parameters, bearer tokens and registered secrets masked."""
    out = str(text)
    for value in sorted(_registered, key=len, reverse=True):
        out = out.replace(value, MASK)
    out = _USERINFO.sub(rf"\1{MASK}@", out)
    out = _PARAM.sub(rf"\1{MASK}", out)
    out = _BASIC.sub(rf"\1{MASK}", out)
    return _BEARER.sub(rf"\1{MASK}", out)


def redact_url(url: str | None) -> str | None:
    """A URL safe to show or store: userinfo and credential parameters masked (None stays None)."""
    return None if url is None else redact(url)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts the formatted message of every record passing through it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
