"""The pixel budget: one check, from the image header, before any image is decoded.

A decompression bomb (a small PNG that decodes to gigapixels) or simply a huge sample would otherwise be
decoded and then upsampled (the detector's masks are per-pixel: a 12000x12000 image costs tens of GB).
:func:`check_pixels` reads only the header (PIL decodes nothing on open) and refuses an image with more
than the budget's pixels in one line naming the file. The budget is ``--max-pixels`` (default
:data:`DEFAULT_MAX_PIXELS`, 4096x4096, well above the 1024x1024/2048x2048 images benchmarks use); PIL's own
bomb limit (``Image.MAX_IMAGE_PIXELS``) is set to the same number, so no other reader decodes more.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

from harness.core.errors import HarnessError

DEFAULT_MAX_PIXELS = 4096 * 4096
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_budget = DEFAULT_MAX_PIXELS


def set_max_pixels(pixels: int | None) -> None:
    """Set the pixel budget of this process (``None``: the default); PIL's bomb limit follows it."""
    global _budget
    _budget = DEFAULT_MAX_PIXELS if pixels is None else int(pixels)
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = _budget


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """``(width, height)`` from the header (a PNG's IHDR chunk, else PIL's lazy open), or None when PIL
    refuses to open the file at all (over twice its bomb limit)."""
    from PIL import Image

    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                return im.size
        except Image.DecompressionBombError:
            return None


def check_pixels(path: str | os.PathLike, what: str = "image") -> tuple[int, int]:
    """``(width, height)`` of an image within the budget (header only), or one error naming the file.

    An unreadable file is left to the caller's own reader (and its error message).
    """
    try:
        size = image_size(path)
    except (OSError, SyntaxError, ValueError):
        return (0, 0)
    if size is None or size[0] * size[1] > _budget:
        shown = (f"{size[0]}x{size[1]} = {size[0] * size[1]} pixels" if size
                 else "more pixels than PIL will open (a decompression bomb?)")
        raise HarnessError(f"{Path(path)}: {what} has {shown}, over the pixel budget of {_budget} (--max-pixels); "
                           "shrink it, or raise --max-pixels if you have the memory")
    return size


def within_budget(path: str | os.PathLike) -> bool:
    """Whether an image is within the pixel budget (header only); for callers that skip rather than stop."""
    try:
        check_pixels(path)
    except HarnessError:
        return False
    return True


def open_rgb(path: str | os.PathLike, what: str = "image"):
    """The image at ``path`` decoded as RGB, after the pixel budget check (one error naming the file)."""
    from PIL import Image

    check_pixels(path, what)
    with Image.open(path) as im:
        return im.convert("RGB")
