"""stable-diffusion.cpp ``sd``: ``<stage> completed, taking N ms|s`` lines (docs/device.md, 'Runner output formats').

``get_learned_condition`` (text encoder) starts a generation, ``sampling`` is the whole U-Net loop (the
tool prints no per-step times; its ``s/it`` progress is an average and is not stored as steps),
``decode_first_stage`` is the VAE, ``loading tensors`` the load, and ``txt2img completed in Xs`` the total.
"""

from __future__ import annotations

import re
from typing import ClassVar

from harness.device.runners.base import Iteration, ParsedRun, TextRunner

STAGE = re.compile(r"(get_learned_condition|sampling|decode_first_stage|loading tensors) completed, "
                   r"taking ([\d.]+) ?(ms|s)\b")
TOTAL = re.compile(r"(?:txt2img|img2img|generate_image) completed in ([\d.]+) ?(ms|s)\b")


def _ms(value: str, unit: str) -> float:
    return float(value) * (1000.0 if unit == "s" else 1.0)


def parse_sdcpp(text: str) -> ParsedRun:
    """Parse an ``sd`` log (stdout+stderr)."""
    run = ParsedRun()
    cur: Iteration | None = None
    events = sorted([(m.start(), "stage", m) for m in STAGE.finditer(text)] +
                    [(m.start(), "total", m) for m in TOTAL.finditer(text)], key=lambda e: e[0])
    for _, kind, m in events:
        run.matched_lines += 1
        if kind == "total":
            if cur is not None:
                cur.e2e_ms = _ms(m.group(1), m.group(2))
                cur.complete = True
            continue
        stage, ms = m.group(1), _ms(m.group(2), m.group(3))
        if stage == "loading tensors":
            run.load_ms = (run.load_ms or 0.0) + ms
            continue
        if stage == "get_learned_condition" or cur is None or cur.complete:
            cur = Iteration(index=len(run.iterations))
            run.iterations.append(cur)
        if stage == "get_learned_condition":
            cur.text_encoder_ms = ms
        elif stage == "sampling":
            cur.unet_total_ms = ms
        else:
            cur.vae_decode_ms = ms
            cur.complete = cur.complete or cur.text_encoder_ms is not None
    return run


class SdCppRunner(TextRunner):
    """stable-diffusion.cpp's ``sd`` CLI."""

    name: ClassVar[str] = "sdcpp"
    version: ClassVar[str] = "1"

    parse_text = staticmethod(parse_sdcpp)
