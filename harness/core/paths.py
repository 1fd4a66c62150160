"""One validation point for identifiers that become path components, and containment of resolved paths.

Case keys, source ids, prompt ids, variant names, job ids and run ids all come from files a user (or a
stranger) wrote. Each one that becomes part of a path goes through :func:`safe_name` (one component) or
:func:`safe_relpath` (a relative path of such components) and is then joined with :func:`inside`, which
resolves the result and refuses anything outside its root, symbolic links included.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from harness.core.errors import HarnessError

#: a safe path component: letters, digits and ``._-+@=,`` plus spaces inside; not starting with a dot or dash
_NAME = re.compile(r"^[A-Za-z0-9_+@=,][A-Za-z0-9_.+@=, -]{0,199}$")
#: names Windows reserves and names that mean something to a shell or to us
_RESERVED = {"con", "prn", "aux", "nul"}


def _why_unsafe(name: object) -> str | None:
    if not isinstance(name, str):
        return f"must be a string, got {type(name).__name__}"
    if not name:
        return "is empty"
    if name in (".", ".."):
        return "is a relative directory reference"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if "\x00" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains a control character"
    if name.endswith((" ", ".")):
        return "ends with a space or a dot"
    if name.lower().split(".")[0] in _RESERVED:
        return "is a reserved device name"
    if not _NAME.match(name):
        return ("may only hold letters, digits, spaces and . _ - + @ = , (not starting with '.', '-' or a space; "
                "at most 200 characters)")
    return None


def safe_name(name: object, *, what: str, where: str) -> str:
    """``name`` if it is safe as one path component, else a one-line error naming ``where`` and ``what``.

    ``where`` is the file (and field) the name came from; ``what`` says what the name is (``case key``).
    """
    why = _why_unsafe(name)
    if why:
        raise HarnessError(f"{where}: {what} {name!r} {why}; rename it to a plain name such as 'case_001'")
    return name  # type: ignore[return-value]


def safe_relpath(path: object, *, what: str, where: str) -> str:
    """A relative POSIX path whose every component passes :func:`safe_name` (e.g. ``animal/001.png``)."""
    if not isinstance(path, str) or not path:
        raise HarnessError(f"{where}: {what} {path!r} must be a non-empty relative path")
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        raise HarnessError(f"{where}: {what} {path!r} is absolute; give a path relative to its folder")
    for part in PurePosixPath(path).parts:
        why = _why_unsafe(part)
        if why:
            raise HarnessError(f"{where}: {what} {path!r}: component {part!r} {why}; use a plain relative path")
    return path


def inside(root: str | os.PathLike, *parts: str, what: str = "path") -> Path:
    """``root/parts...`` resolved, refused unless it stays inside ``root`` (symbolic links followed)."""
    base = Path(root).resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise HarnessError(f"{what} {'/'.join(parts)!r} resolves to {target}, outside {base}; "
                           "refusing to read or write there")
    return target


def folder_arg(path: str | os.PathLike, *, flag: str) -> Path:
    """``path`` given as an output folder: a one-line error if it exists and is not a folder."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise HarnessError(f"{flag} {folder}: is a file, not a folder; pass a folder (it is created if missing)")
    return folder
