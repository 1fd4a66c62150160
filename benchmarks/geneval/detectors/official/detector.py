"""The ``mask2former-official`` detector: GenEval's official mmdet 2.x checkpoint run by transformers, no mmcv.

Every published GenEval number comes from ``mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-
743b7d99.pth`` (mmdetection 2.x; docs/geneval.md, 'Official checkpoint loader'). The detector reads it through
the key map of :mod:`.convert` (or a file that module converted once), runs the Swin backbone in mmdet's
operation order (:mod:`.forward`), self-tests the deformable attention on the scoring device before scoring
(:mod:`.selftest`) and pre/post-processes as mmdet 2.x (``detectors/base.py``).

Lifecycle: construction checks the options only; :meth:`OfficialMask2Former.resolve` checks in seconds that the
checkpoint can be had (a local file, the cached download, or the pinned URL answering); :meth:`load` downloads
if needed, checks the sha256, maps, self-tests and, with ``reuse_memory``, changes glibc's allocator settings
for the process (undone by :meth:`close`).
"""

from __future__ import annotations

import contextlib
import re
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.benchmarks.geneval.detectors.base import Detector, Instances, parse_scale, preprocess, topk_instances
from harness.benchmarks.geneval.detectors.official.convert import (
    LOADER_VERSION,
    OFFICIAL_NAME,
    OFFICIAL_SHA256_PREFIX,
    OFFICIAL_URL,
    SWIN_S,
    Arch,
    converted_source,
    is_converted,
    load_hf_state,
    load_mmdet2_state,
    read_converted,
)
from harness.benchmarks.geneval.detectors.official.forward import strict_fp32, use_mmdet_arithmetic
from harness.benchmarks.geneval.detectors.official.selftest import check_deformable_attention
from harness.benchmarks.geneval.rules import ClassDetections
from harness.core.checkpoints import read_checkpoint
from harness.core.datafiles import DataFile, cache_dir
from harness.core.errors import HarnessError
from harness.core.hashing import sha256_file
from harness.core.secrets import redact_url

if TYPE_CHECKING:
    from PIL import Image

OFFICIAL_FILE = DataFile(OFFICIAL_NAME, OFFICIAL_URL, OFFICIAL_SHA256_PREFIX, "--detector-args weights")
OFFICIAL_LABEL = "GenEval (official detector)"
UNVERIFIED_LABEL = "GenEval (unverified mmdet 2.x checkpoint)"
#: seconds a checkpoint URL may take to answer resolve()'s HEAD request
REACH_TIMEOUT_S = 5.0
_HALF = {"float16": "float16", "fp16": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def hex_digest_option(value: Any) -> str | None:
    """The ``sha256`` option as lower-case hex digits, or None (``none``/``off``: no check)."""
    if value is None or str(value).lower() in ("none", "off", "false", ""):
        return None
    text = str(value).lower()
    if not re.fullmatch(r"[0-9a-f]{8,64}", text):
        raise HarnessError(f"--detector-args sha256={value!r}: give 8 to 64 hex digits of the file's sha256, or "
                           "sha256=none to skip the check (results are then labelled unverified)")
    return text


def download_of(weights: str, expected: str | None) -> DataFile | None:
    """The pinned download that ``weights`` names (``official`` or a URL), or None for a local path."""
    if weights == "official":
        return OFFICIAL_FILE
    if not weights.startswith(("http://", "https://")):
        return None
    shown = redact_url(weights)
    if expected is None:
        raise HarnessError(f"--detector-args weights={shown}: a URL needs sha256=HEX (its digest or the "
                           "first 8+ hex digits) so that the download can be checked")
    if is_converted(weights):
        raise HarnessError(f"--detector-args weights={shown}: a converted file is read from a local path; "
                           "download it and pass weights=PATH")
    name = weights.rstrip("/").rsplit("/", 1)[-1] or "checkpoint.pth"
    return DataFile(name, weights, expected, "--detector-args weights")


def cached_download(data: DataFile) -> Path:
    """Where :func:`harness.core.datafiles.fetch` keeps ``data`` once downloaded."""
    return cache_dir() / "data" / data.sha256[:16] / data.name


def _local(weights: str) -> Path:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise HarnessError(f"--detector-args weights={weights}: no such file; pass the official {OFFICIAL_NAME} "
                           "(or weights=official to download it)")
    return path


def check_reachable(url: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """``url`` answers a HEAD request within ``timeout`` seconds, or one line naming the offline fix."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        if exc.code in (405, 501):  # the server is up but does not do HEAD: the download itself will tell
            return
        reason = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = str(getattr(exc, "reason", None) or exc)
    raise HarnessError(f"--detector-args weights: {redact_url(url)} does not answer ({reason}); download it "
                       "elsewhere and pass --detector-args weights=PATH")


def check_checkpoint_available(weights: Any, sha256: Any, timeout: float = REACH_TIMEOUT_S) -> None:
    """In seconds, reading no tensor: the local file exists (a converted file's metadata is checked), or the
    download is in the cache, or its URL answers. Digests are checked by :func:`resolve_checkpoint` at load."""
    weights = str(weights)
    data = download_of(weights, hex_digest_option(sha256))
    if data is None:
        path = _local(weights)
        if is_converted(path):
            converted_source(path)
    elif not cached_download(data).is_file():
        check_reachable(data.url, timeout)


def resolve_checkpoint(weights: Any, sha256: Any) -> tuple[Path, str]:
    """``(path, full sha256)`` for ``weights`` (``official``, a URL or a path), checked against ``sha256``.

    ``official`` downloads the pinned URL once into the harness cache (offline: pass a path). ``sha256`` is the
    hex digest or a prefix of 8+ digits the file must have (default: the official file's); ``None`` skips it.
    A converted file (:mod:`.convert`) is checked by the digest of the checkpoint it was converted from.
    """
    from harness.core.datafiles import fetch

    expected = hex_digest_option(sha256)
    weights = str(weights)
    data = download_of(weights, expected)
    path = fetch(data) if data is not None else _local(weights)
    converted = is_converted(path)
    digest = converted_source(path)[1] if converted else sha256_file(path)
    if expected is not None and not digest.startswith(expected):
        what = f"the official {OFFICIAL_NAME}" if expected == OFFICIAL_SHA256_PREFIX else "pinned"
        source = " of the checkpoint it was converted from" if converted else ""
        raise HarnessError(f"{path}: sha256 mismatch: expected {expected}… ({what}), got {digest}{source}; download "
                           "it again, or pass sha256=none for another mmdet 2.x checkpoint (results are then labelled "
                           "unverified)")
    return path, digest


def results_label(digest: str, arch: Arch, autocast_dtype: Any = None) -> str:
    """``GenEval (official detector)`` only for the official file's digest and the Swin-S shapes."""
    label = OFFICIAL_LABEL if digest.startswith(OFFICIAL_SHA256_PREFIX) and arch == SWIN_S else UNVERIFIED_LABEL
    if autocast_dtype is not None:
        label += f" [{str(autocast_dtype).removeprefix('torch.')} autocast]"
    return label


def reuse_freed_memory(enabled: bool = True) -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the OS (process-wide, Linux only).

    The pixel decoder allocates and frees tensors of ~160 MB per layer (deformable-attention samples); glibc serves
    each from a fresh mmap, so every forward pays ~40k page faults per tensor: about 3.5 CPU-seconds of kernel time
    per 800² image on this CPU, a quarter of the detector's wall time. With mmap disabled and a 1 GiB trim threshold
    the same memory is reused. Numbers are unchanged (only where memory comes from); the process keeps its peak
    memory (plus fragmentation) while this is on. ``enabled=False`` restores glibc's defaults. Returns whether the
    settings took effect.
    """
    import ctypes
    import platform

    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    if enabled:
        return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 1 << 30))
    done = bool(mallopt(m_mmap_max, 65536)) and bool(mallopt(m_trim_threshold, 128 * 1024))
    with contextlib.suppress(AttributeError):
        libc.malloc_trim(0)
    return done



class OfficialMask2Former(Detector):
    """GenEval's official mmdet 2.x checkpoint in transformers' Mask2Former, mmdet 2.x pre/post-processing.

    ``reuse_memory`` (``auto``: on when running on the CPU) is a process-wide setting: :meth:`load` asks glibc to
    keep freed memory for reuse (:func:`reuse_freed_memory`; about a quarter of the CPU wall time, numbers
    unchanged) and :meth:`close` restores glibc's defaults. Construction never changes it.

    ``label`` is final once loaded (it depends on the file's digest and shapes); before, it is what the options
    promise (``sha256`` pinned to the official file, or unverified).
    """

    name: ClassVar[str] = "mask2former-official"
    label: ClassVar[str] = OFFICIAL_LABEL
    defaults: ClassVar[dict[str, Any]] = {
        "weights": "official",  # the pinned URL (downloaded once, cached), a local .pth, or a converted .safetensors
        "sha256": OFFICIAL_SHA256_PREFIX,  # hex digits the file's sha256 must start with; none = skip (unverified)
        "device": "auto",
        "dtype": "float32",  # float16/bfloat16: CUDA autocast only; labelled, never mixed with fp32 numbers
        "compile": False,  # torch.compile the model (and self-test the compiled deformable attention)
        "attention": "mmdet",  # Swin arithmetic: mmdet (bit-identical to mmdet on CPU), sdpa or eager (~1e-6 apart)
        "batch": "auto",  # images per forward: 1 on CPU (batching is slower there), 8 on GPU
        "trust_pickle": False,  # allow code in the checkpoint's pickle (only for files you trust)
        "reuse_memory": "auto",  # keep freed memory for reuse (glibc mallopt, process-wide) from load() to close()
        "scale": "1333x800",  # mmdet Resize(img_scale=(1333, 800)); only change it for experiments
    }
    unhashed_options: ClassVar[frozenset[str]] = frozenset({"device", "batch", "trust_pickle", "reuse_memory"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.expected_sha256 = hex_digest_option(self.options["sha256"])
        self.scale = parse_scale(self.options["scale"])
        self.device: str | None = None  # device, dtype and batch: resolved (torch) by resolve() or load()
        self.autocast_dtype: Any = _HALF.get(str(self.options["dtype"]))
        self.batch: int | None = None
        self.model: Any = None
        self.arch: Arch | None = None
        self.sha256: str | None = None
        self.weights: str | None = None
        self.selftest_error: float | None = None
        self.reuses_memory = False
        self._forward: Any = None
        self._set_label(self.expected_sha256 or "", SWIN_S)

    def _set_label(self, digest: str, arch: Arch) -> None:
        self.label = results_label(digest, arch, self.autocast_dtype)  # type: ignore[misc]
        if self.scale != (1333, 800):  # an experiment, not the official pipeline: never mixed with it
            self.label += f" [scale {self.scale[0]}x{self.scale[1]}]"  # type: ignore[misc]

    def _runtime(self) -> None:
        """Resolve ``device``, ``dtype`` and ``batch`` (imports torch; loads nothing)."""
        if self.device is not None:
            return
        import torch

        from harness.core.torchenv import resolve_device, resolve_dtype

        device = resolve_device(self.options["device"])
        dtype = resolve_dtype(self.options["dtype"], device)
        if dtype != torch.float32 and not device.startswith("cuda"):
            raise HarnessError(f"--detector-args dtype={self.options['dtype']}: half precision is for CUDA only; "
                               "on CPU the official detector runs in float32 (its parity with mmdet is fp32)")
        self.autocast_dtype = None if dtype == torch.float32 else dtype
        batch = self.options["batch"]
        self.batch = (8 if device.startswith("cuda") else 1) if batch == "auto" else int(batch)
        self.device = device
        self._set_label(self.expected_sha256 or "", SWIN_S)

    def resolve(self) -> None:
        """Device and dtype, and the checkpoint: a local file, the cached download, or the URL answering."""
        self._runtime()
        check_checkpoint_available(self.options["weights"], self.options["sha256"])

    def _load(self) -> None:
        import torch

        self._runtime()
        path, self.sha256 = resolve_checkpoint(self.options["weights"], self.options["sha256"])
        attention = self.options["attention"]
        implementation = "eager" if attention == "mmdet" else attention
        if is_converted(path):
            mapped, self.arch, _ = read_converted(path)
            self.model = load_hf_state(mapped, self.arch, str(path), implementation)
            del mapped  # the model holds its own copies
        else:
            state, _ = read_checkpoint(path, trust_pickle=bool(self.options["trust_pickle"]), source=OFFICIAL_URL)
            self.model, self.arch = load_mmdet2_state(state, str(path), implementation)
            del state
        if attention == "mmdet":
            use_mmdet_arithmetic(self.model)
        self._set_label(self.sha256, self.arch)
        self.weights = str(path)
        self.model.to(self.device)
        self.selftest_error = check_deformable_attention(self.model, self.device, self.autocast_dtype,
                                                         bool(self.options["compile"]), str(self.options["dtype"]))
        reuse = self.options["reuse_memory"]
        if reuse is True or (reuse == "auto" and self.device == "cpu"):
            self.reuses_memory = reuse_freed_memory(True)
        self._forward = torch.compile(self.model, dynamic=False) if self.options["compile"] else self.model

    def close(self) -> None:
        """Drop the model and restore glibc's allocator settings if :meth:`load` changed them."""
        if self.reuses_memory:
            reuse_freed_memory(False)
            self.reuses_memory = False
        self.model = self._forward = None
        super().close()

    def fingerprint(self) -> dict[str, Any]:
        self.load()  # the checkpoint's digest and shapes
        return {"detector": self.name, "label": self.label, "checkpoint_sha256": self.sha256,
                "arch": asdict(self.arch), "loader": LOADER_VERSION, "scale": list(self.scale), "resize": "cv2",
                "dtype": str(self.autocast_dtype or "torch.float32"), "attention": self.options["attention"],
                "compile": bool(self.options["compile"])}

    def _autocast(self) -> Any:
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.autocast_dtype)

    def detect_raw(self, images: list[Image.Image], min_score: float = 0.0) -> list[Instances]:
        """The top-100 (query, class) instances of each image; same-size images share forward passes."""
        import torch

        self.load()
        results: list[Instances | None] = [None] * len(images)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.size, []).append(i)
        for (width, height), idx in by_size.items():
            for start in range(0, len(idx), self.batch):
                chunk = idx[start:start + self.batch]
                prepared = [preprocess(images[i], "cpu", torch.float32, self.scale, resize="cv2") for i in chunk]
                pixels = torch.stack([p[0] for p in prepared]).to(self.device)
                with torch.inference_mode(), self._autocast(), strict_fp32(self.device):
                    out = self._forward(pixel_values=pixels)
                    for j, i in enumerate(chunk):
                        results[i] = topk_instances(out.class_queries_logits[j].float(),
                                                    out.masks_queries_logits[j].float(), prepared[j][1],
                                                    (height, width), min_score)
        return [r for r in results if r is not None]

    def detect(self, images: list[Image.Image], min_score: float = 0.0) -> list[dict[str, ClassDetections]]:
        """Detections per image in mmdet 2.x order; pairs with class prob <= ``min_score`` are skipped."""
        from harness.benchmarks.geneval.classes import CLASS_NAMES

        return [inst.to_detections(CLASS_NAMES) for inst in self.detect_raw(images, min_score)]
