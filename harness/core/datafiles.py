"""Benchmark data files: downloaded at run time from a pinned URL, checked by sha256, cached.

Nothing here is committed to the repository. Offline users pass a local copy, which is checked by the
same sha256. The cache lives in ``$HARNESS_CACHE`` (default ``~/.cache/dreamlite-harness``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError
from harness.core.hashing import sha256_file


@dataclass(frozen=True)
class DataFile:
    """A pinned upstream file: cache name, URL at a fixed commit, expected sha256, and the CLI flag
    that supplies a local copy (named in error messages). ``sha256`` may be a prefix of at least 8 hex
    digits where the publisher pins only that (OpenMMLab names checkpoints ``...-<sha256[:8]>.pth``)."""

    name: str
    url: str
    sha256: str
    flag: str


def cache_dir() -> Path:
    """Where downloaded data and built tiny models are cached."""
    return Path(os.environ.get("HARNESS_CACHE", Path.home() / ".cache" / "dreamlite-harness"))


def digest_matches(actual: str, expected: str) -> bool:
    """Whether a full hex sha256 matches an expected digest or digest prefix (8+ hex digits)."""
    expected = expected.lower()
    return actual == expected or (8 <= len(expected) < 64 and actual.startswith(expected))


def fetch(data: DataFile, local: str | os.PathLike | None = None, *, verify: bool = True) -> Path:
    """Return a verified path to ``data``: the local copy if given, else the cache, else download.

    ``verify=False`` accepts a local file whose sha256 differs (a custom prompt set); the caller must
    then record the actual sha256, which :func:`sha256_file` gives.
    """
    if local is not None:
        path = Path(local)
        if not path.is_file():
            raise HarnessError(f"{path}: no such file (given with {data.flag}); pass the path of {data.name}")
        if verify:
            _check(path, data, f"the local copy given with {data.flag}")
        return path
    cached = cache_dir() / "data" / data.sha256[:16] / data.name
    if cached.is_file() and digest_matches(sha256_file(cached), data.sha256):
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=f".{data.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(data.url, timeout=60) as resp:
            shutil.copyfileobj(resp, out)
        _check(Path(tmp), data, f"the download from {data.url}")
        os.replace(tmp, cached)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise HarnessError(
            f"could not download {data.name} from {data.url} ({exc}); offline, pass a local copy with "
            f"{data.flag} PATH (expected sha256 {data.sha256})"
        ) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return cached


def _check(path: Path, data: DataFile, what: str) -> None:
    actual = sha256_file(path)
    if not digest_matches(actual, data.sha256):
        raise HarnessError(
            f"{path}: sha256 mismatch for {what}: expected {data.sha256} ({data.name} at the pinned commit), "
            f"got {actual}. Re-download it, or pass the official file with {data.flag}."
        )
