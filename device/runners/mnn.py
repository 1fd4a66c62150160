"""MNN ``diffusion_demo`` / ``sana_diffusion_demo``: ``AUTOTIME`` lines ``"<func>, <line>, cost time: <ms> ms"``.

``load`` → load time; each ``text_encoder`` starts a generation; ``unet`` lines are the steps in order;
``vae_decoder`` is the decode; ``run`` closes the generation with its end-to-end time.
"""

from __future__ import annotations

import re
from typing import ClassVar

from harness.device.runners.base import Iteration, ParsedRun, TextRunner

AUTOTIME = re.compile(r"^\s*(?P<stage>\w+), \d+, cost time: (?P<ms>[\d.]+) ms\s*$", re.M)


def parse_mnn(text: str) -> ParsedRun:
    """Parse AUTOTIME lines (stdout, or logcat text with the same lines)."""
    run = ParsedRun()
    cur: Iteration | None = None

    def current() -> Iteration:
        nonlocal cur
        if cur is None or cur.complete:
            cur = Iteration(index=len(run.iterations))
            run.iterations.append(cur)
        return cur

    for m in AUTOTIME.finditer(text):
        stage, ms = m.group("stage"), float(m.group("ms"))
        run.matched_lines += 1
        if stage == "load":
            run.load_ms = (run.load_ms or 0.0) + ms
        elif stage == "text_encoder":
            if cur is not None and not cur.complete and (cur.text_encoder_ms is not None or cur.unet_step_ms):
                cur = None  # a new generation began before the previous one printed `run`
            current().text_encoder_ms = ms
        elif stage == "unet":
            current().unet_step_ms.append(ms)
        elif stage in ("vae_decoder", "vae_decode"):
            current().vae_decode_ms = ms
        elif stage == "run":
            it = current()
            it.e2e_ms = ms
            it.complete = True
        else:
            current().other_ms[stage] = current().other_ms.get(stage, 0.0) + ms
    return run


class MnnRunner(TextRunner):
    """MNN's diffusion demos; warm-up generations are the first ``warmup_iters``."""

    name: ClassVar[str] = "mnn"
    version: ClassVar[str] = "1"

    parse_text = staticmethod(parse_mnn)
