"""Host-side reference: per-stage latency and peak memory of a model adapter on the local CPU/GPU.

``harness device profile --model dreamlite-mobile`` loads the adapter through the registry, hooks the
pipeline's ``text_encoder`` and ``unet`` forward calls (torch hooks) and ``vae.decode``, runs warm-up and
measured generations, and appends records with the sweep's schema, so host and phone rows share one table.
Memory: process peak RSS (``getrusage``), a 5 Hz ``/proc/self/status`` sampler (anon / file), per-stage
``VmHWM`` (reset through ``/proc/self/clear_refs`` where allowed) and, on CUDA, per-stage peak allocation.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.hashing import content_hash
from harness.device.record import SCHEMA_VERSION, record_log, timing_fields
from harness.device.runners.base import Iteration, ParsedRun


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _Sampler(threading.Thread):
    """Samples RssAnon / RssFile / VmRSS of this process every ``period_s``."""

    def __init__(self, period_s: float = 0.2):
        super().__init__(daemon=True)
        self.period_s, self.stop_event = period_s, threading.Event()
        self.peaks: dict[str, int] = {}
        self.samples = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            for key in ("RssAnon", "RssFile", "VmRSS"):
                v = _status_kb(key)
                if v is not None:
                    self.peaks[key] = max(self.peaks.get(key, 0), v)
            self.samples += 1
            self.stop_event.wait(self.period_s)


class StageHooks:
    """Times text encoder / U-Net / VAE decode calls into the current :class:`Iteration`."""

    def __init__(self, pipe: Any, cuda: bool):
        import torch

        self.torch, self.cuda = torch, cuda
        self.pipe = pipe
        self.current: Iteration | None = None
        self.handles: list[Any] = []
        self.can_reset_hwm = _reset_hwm()
        self._t0: dict[str, float] = {}
        self._orig_decode = None
        for stage, module in (("text_encoder", getattr(pipe, "text_encoder", None)),
                              ("unet", getattr(pipe, "unet", None) or getattr(pipe, "transformer", None))):
            if module is None:
                raise HarnessError(f"the model's pipeline has no {stage}; `device profile` needs a diffusers "
                                   "pipeline with text_encoder, unet (or transformer) and vae")
            self.handles.append(module.register_forward_pre_hook(lambda m, a, s=stage: self.start(s)))
            self.handles.append(module.register_forward_hook(lambda m, a, o, s=stage: self.stop(s)))
        vae = getattr(pipe, "vae", None)
        if vae is None:
            raise HarnessError("the model's pipeline has no vae; `device profile` cannot time the decode")
        self._orig_decode = vae.decode

        def decode(*args: Any, **kwargs: Any) -> Any:
            self.start("vae_decode")
            try:
                return self._orig_decode(*args, **kwargs)
            finally:
                self.stop("vae_decode")

        vae.decode = decode

    def _sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def start(self, stage: str) -> None:
        self._sync()
        if self.can_reset_hwm:
            _reset_hwm()
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats()
        self._t0[stage] = time.perf_counter()

    def stop(self, stage: str) -> None:
        self._sync()
        ms = (time.perf_counter() - self._t0.pop(stage)) * 1000
        it = self.current
        if it is None:
            return
        if stage == "unet":
            it.unet_step_ms.append(ms)
        elif stage == "text_encoder":
            it.text_encoder_ms = (it.text_encoder_ms or 0.0) + ms
        else:
            it.vae_decode_ms = (it.vae_decode_ms or 0.0) + ms
        hwm = _status_kb("VmHWM")
        if hwm is not None:
            it.stage_vm_hwm_kb[stage] = max(it.stage_vm_hwm_kb.get(stage, 0), hwm)
        if self.cuda:
            key = f"{stage}_cuda_peak_kb"
            it.other_ms[key] = max(it.other_ms.get(key, 0), self.torch.cuda.max_memory_allocated() // 1024)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        if self._orig_decode is not None:
            self.pipe.vae.decode = self._orig_decode


def host_info(device: str) -> dict[str, Any]:
    """Provenance of the host, in the device record's fields."""
    cpu = platform.processor() or None
    mem_total = None
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), cpu)
        mem_total = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                             if ln.startswith("MemTotal:")))
    except (OSError, StopIteration, ValueError):
        pass
    soc = cpu
    if device.startswith("cuda"):
        import torch

        soc = torch.cuda.get_device_name(torch.device(device))
    return {"serial": f"host:{socket.gethostname()}", "model": cpu, "soc": soc, "platform": platform.machine(),
            "kernel": platform.release(), "mem_total_kb": mem_total, "transport": "local",
            "android_release": None, "sdk": None, "build_fingerprint": None, "os_ui_version": None}


@contextmanager
def _sampling(period_s: float):
    s = _Sampler(period_s)
    s.start()
    try:
        yield s
    finally:
        s.stop_event.set()
        s.join(2)


def profile_model(model_name: str, model_options: dict[str, Any], *, steps: list[int], resolutions: list[int],
                  iters: int = 3, warmup: int = 1, prompt: str = "a photo of a cat", seed: int = 0,
                  out: str | Path, progress: Any = None) -> list[dict[str, Any]]:
    """Profile each (steps, resolution); append one record per configuration to ``out``; return them."""
    import resource

    from harness.core.torchenv import resolve_device
    from harness.registry import registry

    if iters <= warmup:
        raise HarnessError(f"--iters {iters} must exceed --warmup {warmup} (no measured generation otherwise)")
    model = registry("models").load(model_name)(**model_options)
    device = resolve_device(model.options.get("device", "auto"))
    t = time.perf_counter()
    model.ensure_loaded()
    load_ms = (time.perf_counter() - t) * 1000
    pipe = getattr(model, "pipe", None)
    if pipe is None:
        raise HarnessError(f"model {model_name!r} exposes no diffusers pipeline (.pipe); `device profile` hooks "
                           "its text_encoder/unet/vae")
    cuda = device.startswith("cuda")
    info = host_info(device)
    hooks = StageHooks(pipe, cuda)
    logbook = record_log(out)
    records = []
    try:
        for n_steps in steps:
            for res in resolutions:
                parsed = ParsedRun(load_ms=load_ms if not records else None)
                t_start = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
                with _sampling(0.2) as sampler:
                    t_job = time.perf_counter()
                    for i in range(iters):
                        it = Iteration(index=i, warmup=i < warmup)
                        hooks.current = it
                        t0 = time.perf_counter()
                        model.generate([prompt], [seed], steps=n_steps, resolution=res)
                        hooks._sync()
                        it.e2e_ms = (time.perf_counter() - t0) * 1000
                        it.complete = True
                        parsed.iterations.append(it)
                        parsed.matched_lines += 1
                    wall = time.perf_counter() - t_job
                hooks.current = None
                ident = {"model_hash": model.model_hash(), "steps": n_steps, "res": res, "iters": iters,
                         "warmup": warmup, "serial": info["serial"], "device": device, "prompt": prompt, "seed": seed}
                job_id = content_hash(ident)
                rec: dict[str, Any] = {
                    "schema_version": SCHEMA_VERSION, "key": f"{job_id}#1", "sweep": "host-profile",
                    "run_id": f"device-host-profile-{content_hash(info['serial'], 8)}", "job_id": job_id,
                    "attempt": 1, "status": "ok", "error": None, "variant": model_name, "runtime": "torch",
                    "backend": device, "precision": str(model.options.get("dtype")), "threads": _threads(),
                    "memory_mode": None, "steps": n_steps, "height": res, "width": res, "repeat_idx": 0,
                    "order_idx": len(records), "seed": seed, "runner": "torch-hooks", "runner_version": "1",
                    "command": f"profile --model {model_name}", **info, "t_start_utc": t_start,
                    "t_end_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                    "wall_s": round(wall, 3), "model_hash": model.model_hash(),
                    "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                    "peak_rss_anon_kb": sampler.peaks.get("RssAnon"), "peak_rss_file_kb": sampler.peaks.get("RssFile"),
                    "peak_vm_rss_kb": sampler.peaks.get("VmRSS"), "mem_samples": sampler.samples,
                    "stage_hwm_reset": hooks.can_reset_hwm,
                    "unet_calls_per_iter": [len(it.unet_step_ms) for it in parsed.iterations],
                }
                rec.update(timing_fields(parsed))
                if cuda:
                    rec["cuda_peak_kb"] = {k: v for it in parsed.iterations for k, v in it.other_ms.items()}
                logbook.append([rec])
                records.append(rec)
                if progress:
                    progress(f"{model_name} {n_steps} steps {res}px: e2e median {rec['e2e_ms_median']:.1f} ms")
    finally:
        hooks.remove()
        logbook.close()
    return records


def _threads() -> int | None:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:
        return os.cpu_count()
