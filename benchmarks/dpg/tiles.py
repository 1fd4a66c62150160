"""The official image layout: a prompt's images as one 2×2 tile ``<id>.png`` (docs/dpg.md, "Layout").

Image k of a prompt (k = 0..3) sits in box k of a 2R×2R tile: top-left, top-right, bottom-left,
bottom-right, the crop boxes of the official scorer; one image per prompt is the R×R image itself. A run
keeps its single images in ``images/<id>/<k>.png`` and writes the tiles into ``tiles/`` once they are all
scored, so ``compute_dpg_bench.py --image-root-path RUN/tiles`` re-scores exactly what we scored. Writing is
idempotent: ``tiles.json`` remembers which single images each tile holds, and a tile is written again only
when they changed or the file did.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.fsio import atomic_write_bytes, atomic_write_text
from harness.core.hashing import sha256_bytes
from harness.core.jsonio import dumps
from harness.core.paths import inside

if TYPE_CHECKING:
    from PIL import Image

TILES_DIR = "tiles"
INDEX = "tiles.json"


def boxes(resolution: int) -> list[tuple[int, int, int, int]]:
    """The official crop boxes of a 2R×2R tile, in image order."""
    r = resolution
    return [(0, 0, r, r), (r, 0, 2 * r, r), (0, r, r, 2 * r), (r, r, 2 * r, 2 * r)]


def compose(images: Sequence[Image.Image]) -> Image.Image:
    """One image as it is; 2 to 4 same-size square images in the boxes of a 2R×2R tile (black elsewhere)."""
    from PIL import Image

    if len(images) == 1:
        return images[0].convert("RGB")
    side = images[0].size[0]
    tile = Image.new("RGB", (2 * side, 2 * side))
    for image, box in zip(images, boxes(side), strict=False):
        tile.paste(image.convert("RGB"), box[:2])
    return tile


def write_tiles(out: Path, images_dir: Path, groups: Mapping[str, Sequence[tuple[str, str]]]) -> dict[str, Any]:
    """Write ``out/tiles/<id>.png`` for each item from its single images ``(name in images_dir, sha256)``, in
    tile order; a tile whose singles and file are unchanged since ``tiles.json`` was written is kept."""
    from PIL import Image

    index_path = out / INDEX
    try:
        index = json.loads(index_path.read_text(encoding="utf-8")) if index_path.is_file() else {}
    except (ValueError, UnicodeDecodeError):
        index = {}  # ours and rewritten below; a damaged one only costs a rewrite
    index = index if isinstance(index, dict) else {}
    written = kept = 0
    for item, singles in groups.items():
        path = inside(out, TILES_DIR, f"{item}.png", what="tile")
        want = [sha for _, sha in singles]
        entry = index.get(item)
        if (isinstance(entry, dict) and entry.get("singles") == want and path.is_file()
                and entry.get("stat") == _stat(path)):
            kept += 1
            continue
        opened = []
        for name, _ in singles:
            with Image.open(inside(images_dir, *name.split("/"), what="image")) as im:
                im.load()
                opened.append(im.copy())
        buf = io.BytesIO()
        compose(opened).save(buf, format="PNG")
        atomic_write_bytes(path, buf.getvalue(), fsync=False)
        index[item] = {"singles": want, "sha256": sha256_bytes(buf.getvalue()), "stat": _stat(path)}
        written += 1
    atomic_write_text(index_path, dumps(index, sort_keys=True) + "\n")
    return {"folder": TILES_DIR, "tiles": len(groups), "written": written, "kept": kept}


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]
