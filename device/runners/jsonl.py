"""JSON-lines contract v1 (docs/device.md, 'JSON-lines contract v1'): ``metrics.jsonl`` or ``@@BENCH`` lines."""

from __future__ import annotations

import json
from typing import ClassVar

from harness.device.runners.base import Iteration, ParsedRun, Runner, text_of

STAGE_ALIASES = {"text_encoder": "text_encoder", "text_encode": "text_encoder", "unet": "unet",
                 "vae_decode": "vae_decode", "vae_decoder": "vae_decode", "vae": "vae_decode"}
PREFIX = "@@BENCH "


def contract_lines(files: dict[str, bytes]) -> list[str]:
    """The contract's lines: the metrics file when present, else prefixed stdout lines."""
    text = text_of(files, "metrics.jsonl")
    if text.strip():
        return text.splitlines()
    return [line[len(PREFIX):] for line in text_of(files, "stdout.txt").splitlines() if line.startswith(PREFIX)]


def parse_contract(lines: list[str]) -> ParsedRun:
    """Parse contract lines; unknown events/fields and non-JSON lines are ignored."""
    run = ParsedRun()
    iters: dict[int, Iteration] = {}

    def it_for(event: dict) -> Iteration:
        idx = int(event.get("iter", 0))
        if idx not in iters:
            iters[idx] = Iteration(index=idx)
        return iters[idx]

    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(event, dict) or event.get("v") != 1:
            continue
        kind = event.get("event")
        try:
            if kind == "meta":
                run.meta.update({k: v for k, v in event.items() if k not in ("v", "event", "t_ms")})
            elif kind == "load":
                run.load_ms = (run.load_ms or 0.0) + float(event["ms"])
            elif kind == "iter_start":
                it_for(event).warmup = bool(event.get("warmup", False))
            elif kind == "stage":
                it = it_for(event)
                stage = STAGE_ALIASES.get(str(event["stage"]), str(event["stage"]))
                ms = float(event["ms"])
                if stage == "text_encoder":
                    it.text_encoder_ms = ms
                elif stage == "unet":
                    step = int(event.get("step", len(it.unet_step_ms)))
                    while len(it.unet_step_ms) <= step:
                        it.unet_step_ms.append(float("nan"))
                    it.unet_step_ms[step] = ms
                elif stage == "vae_decode":
                    it.vae_decode_ms = ms
                else:
                    it.other_ms[stage] = it.other_ms.get(stage, 0.0) + ms
                if "vm_hwm_kb" in event:
                    it.stage_vm_hwm_kb[stage] = max(it.stage_vm_hwm_kb.get(stage, 0), int(event["vm_hwm_kb"]))
            elif kind == "iter_end":
                it = it_for(event)
                it.e2e_ms = float(event["e2e_ms"]) if event.get("e2e_ms") is not None else None
                it.output = event.get("output")
                it.complete = True
            elif kind == "error":
                run.errors.append(str(event.get("message", "error")))
            else:
                continue
        except (KeyError, TypeError, ValueError):
            continue  # a malformed event counts as garbage
        run.matched_lines += 1
    run.iterations = [iters[k] for k in sorted(iters)]
    for it in run.iterations:
        it.unet_step_ms = [x for x in it.unet_step_ms if x == x]  # drop holes from missing steps
    return run


class JsonlRunner(Runner):
    """Any binary that emits contract v1 (``--metrics-out {metrics_out}`` or ``@@BENCH`` stdout lines)."""

    name: ClassVar[str] = "jsonl"
    version: ClassVar[str] = "1"
    extra_outputs: ClassVar[tuple[str, ...]] = ("metrics.jsonl",)

    def placeholders(self) -> dict[str, str]:
        return {"metrics_out": "metrics.jsonl"}

    def parse(self, files: dict[str, bytes], warmup_iters: int = 0) -> ParsedRun:
        return parse_contract(contract_lines(files))
