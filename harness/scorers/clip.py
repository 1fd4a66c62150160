"""open_clip models as the benchmarks name them: ``ARCH:PRETRAINED`` specs, checked, resolved and loaded.

A spec is ``ARCH:TAG`` (a pretrained tag open_clip knows, e.g. ``ViT-L-14:openai``), ``ARCH:/path/to/file``
(a local checkpoint, opened safely: tensors only) or ``tiny`` (a tiny random CLIP for tests, nothing to
download). :func:`resolve_clip` says in seconds whether the weights can be had; :func:`load_clip` loads them.
GenEval's colour head and ImgEdit's CLIP metrics both load their model here.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError

TINY_ARCH = "harness-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "patch_size": 32, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
#: weight files that hold no pickle (open_clip reads them with safetensors or numpy): nothing to refuse
_NO_PICKLE = (".safetensors", ".npz", ".npy")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", *_NO_PICKLE)
_CHECKED: set[tuple[str, int, int]] = set()
log = logging.getLogger(__name__)


def parse_clip_spec(spec: str) -> tuple[str, str | None]:
    """``"ViT-L-14:openai"`` → (arch, pretrained); ``"tiny"`` → the tiny random CLIP."""
    if spec == "tiny":
        return TINY_ARCH, None
    arch, _, pretrained = spec.partition(":")
    return arch, (pretrained or None)


def _is_local(pretrained: str | None) -> bool:
    """Whether the pretrained part names a file (a path, or a weight file name) rather than a tag."""
    return bool(pretrained) and ("/" in pretrained or os.sep in pretrained or Path(pretrained).exists()
                                 or Path(pretrained).suffix.lower() in _WEIGHT_SUFFIXES)


def clip_spec_arg(spec: str) -> str:
    """argparse ``type=`` for ``--clip``/``--clip-metrics``: the spec, checked by :func:`check_clip_spec`
    while the command line is parsed (before any work), or a one-line usage error."""
    try:
        check_clip_spec(spec, flag="")
    except HarnessError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return spec


def check_clip_spec(spec: str, flag: str = "--clip") -> None:
    """Refuse a ``--clip ARCH:FILE`` whose file is missing, corrupt or carries code (one line).

    A local checkpoint is opened with the safe checkpoint reader (tensors only, no code from the pickle),
    whatever open_clip version reads it afterwards. A file already checked is not read again.
    """
    where = f"{flag} {spec}: " if flag else ""
    _, pretrained = parse_clip_spec(spec)
    if not _is_local(pretrained):
        return  # a pretrained tag such as "openai": open_clip downloads it
    path = Path(pretrained)
    if not path.is_file():
        raise HarnessError(f"{where}{path}: no such checkpoint file; pass ARCH:/path/to/checkpoint.pt or a "
                           "pretrained tag such as ViT-L-14:openai")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if path.suffix.lower() in _NO_PICKLE or key in _CHECKED:
        return
    from harness.core.checkpoints import read_checkpoint

    try:
        read_checkpoint(path, fix="an open_clip checkpoint must be a plain tensor file (a state_dict saved with "
                                  "torch.save, or .safetensors); re-save it, or use a pretrained tag such as openai")
    except HarnessError as exc:
        raise HarnessError(f"{where}{exc}") from None
    _CHECKED.add(key)


def _offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub reads it."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _cached_weights(cfg: dict[str, Any]) -> tuple[str | None, str]:
    """The cached file open_clip would load for a pretrained config (None if none), and where it comes from.

    The Hugging Face hub entry (``org/name/`` or ``org/name/file``) is preferred when huggingface_hub is
    installed, safetensors first, as open_clip's ``download_pretrained`` does; else the URL's file in
    ``~/.cache/clip``.
    """
    hub, url = cfg.get("hf_hub") or "", cfg.get("url") or ""
    try:
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    except ImportError:
        hub = ""
    if hub:
        repo, filename = os.path.split(hub)
        filename = filename or HF_WEIGHTS_NAME
        names = [HF_SAFE_WEIGHTS_NAME] if filename == HF_WEIGHTS_NAME else []
        if filename != HF_WEIGHTS_NAME and filename.endswith((".bin", ".pth")):
            names.append(filename[:-4] + ".safetensors")
        for name in [*names, filename]:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str):
                return found, f"Hugging Face hub {repo}"
        return None, f"Hugging Face hub {repo}"
    if url:
        local = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        return (str(local) if local.is_file() else None), url
    return None, "nowhere"


def resolve_clip(spec: str, flag: str = "--clip") -> None:
    """Fail in seconds, with one line, if the weights of ``spec`` cannot be had (loads nothing).

    ``tiny``: nothing to check. A local file: it exists and is safe to open. A pretrained tag: open_clip
    knows the architecture and the tag, and with ``HF_HUB_OFFLINE=1`` the weights are already cached.
    """
    arch, pretrained = parse_clip_spec(spec)
    if arch == TINY_ARCH:
        return
    check_clip_spec(spec, flag)
    import open_clip

    where = f"{flag} {spec}" if flag else spec
    known = open_clip.list_models()
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=3)
        raise HarnessError(f"{where}: open_clip has no architecture {arch!r}"
                           + (f" (did you mean {', '.join(close)}?)" if close else "") + "; `python -c 'import "
                           "open_clip; print(open_clip.list_models())'` lists them")
    if pretrained is None or _is_local(pretrained):
        return
    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        raise HarnessError(f"{where}: open_clip has no pretrained weights {pretrained!r} for {arch}; "
                           + (f"known tags: {', '.join(tags)}" if tags else "it has none for this architecture; "
                              f"pass {flag or '--clip'} {arch}:/path/to/checkpoint"))
    if not _offline():
        return  # open_clip downloads them
    found, source = _cached_weights(cfg)
    if found is None:
        raise HarnessError(f"{where}: the weights are not in the local cache and HF_HUB_OFFLINE=1 forbids "
                           f"downloading them (from {source}); fetch them once online, or pass "
                           f"{flag or '--clip'} {arch}:/path/to/checkpoint")
    log.debug("CLIP %s: cached weights %s", spec, found)


def register_tiny_config() -> None:
    """Make the tiny random CLIP's config known to open_clip (written once into the harness cache)."""
    import open_clip

    from harness.core.datafiles import cache_dir

    folder = cache_dir() / "tiny" / "open_clip_config"
    path = folder / f"{TINY_ARCH}.json"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(TINY_CONFIG))
        tmp.replace(path)
    open_clip.add_model_config(Path(folder))


def load_clip(spec: str, device: str = "auto", *, seed: int = 0,
              flag: str = "--clip") -> tuple[Any, Any, Any, str, str | None]:
    """``(model, preprocess, tokenizer, arch, pretrained)`` of an open_clip spec, the model in eval mode on
    ``device`` (``auto``: see :func:`harness.core.torchenv.resolve_device`); the tiny CLIP's random weights
    come from ``seed``."""
    import open_clip
    import torch

    from harness.core.torchenv import resolve_device

    arch, pretrained = parse_clip_spec(spec)
    check_clip_spec(spec, flag)
    if arch == TINY_ARCH:
        register_tiny_config()
        torch.manual_seed(seed)
    try:
        with _quiet_random_init_warning(arch == TINY_ARCH):
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained,
                                                                         device=resolve_device(device))
    except (RuntimeError, OSError, ValueError) as exc:
        raise HarnessError(
            f"{flag} {spec}: could not load open_clip model {arch!r} with weights {pretrained!r} "
            f"({' '.join(str(exc).split())[:300]}); offline, pass {flag} ARCH:/path/to/checkpoint.pt"
        ) from exc
    return model.eval(), preprocess, open_clip.get_tokenizer(arch), arch, pretrained


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init_warning(active: bool) -> Iterator[None]:
    """open_clip warns that a model without weights is random: for the tiny CLIP that is the point."""
    flt = _DropRandomInitWarning()
    root = logging.getLogger()
    if active:
        root.addFilter(flt)
        for handler in root.handlers:
            handler.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)
        for handler in root.handlers:
            handler.removeFilter(flt)
