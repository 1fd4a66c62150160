"""Keep secrets out of every line we print, log, record or report.

Secrets reach text through URLs (``https://user:password@host/...``, ``?api_key=...&token=...``) and
through values we were handed (an API key read from the environment). :func:`redact` removes both kinds
from any text; :func:`redact_url` is the same for one URL. :func:`register_secret` adds a value (such
as the judge's API key) that must never appear verbatim anywhere, and :class:`RedactingFilter` applies
:func:`redact` to every log record.
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
MASK = "***"
_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret value (at least 4 characters) so that :func:`redact` masks it wherever it appears."""
    if value and len(value) >= 4:
        _registered.add(value)


def redact(text: object) -> str:
    """``text`` with URL userinfo, credential query parameters, bearer tokens and registered secrets masked."""
    out = str(text)
    for value in sorted(_registered, key=len, reverse=True):
        out = out.replace(value, MASK)
    out = _USERINFO.sub(rf"\1{MASK}@", out)
    out = _PARAM.sub(rf"\1{MASK}", out)
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
