"""Whether weights named by a local folder or a Hugging Face hub id can be had, checked in seconds.

Used by every component's fail-fast ``resolve()`` (model adapters, detectors): a local folder must hold its
marker file (``model_index.json`` for a diffusers pipeline, ``config.json`` for a transformers model); a hub
id must be in the local Hugging Face cache, or, when the hub is not switched off, served by the hub.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from harness.core.errors import HarnessError

#: a Hugging Face hub id (``name`` or ``owner/name``); anything else that is not a folder is a missing folder
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
#: seconds the hub may take to answer whether a file exists
HUB_TIMEOUT_S = 5.0


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` is set (as huggingface_hub reads them)."""
    flags = (os.environ.get(name, "") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(value.strip().upper() in ("1", "ON", "YES", "TRUE") for value in flags)


def not_a_folder_of(folder: Path, marker: str, what: str, fix: str) -> str:
    return f"{folder}: not a {what} folder (no {marker}); {fix}"


def check_weights(weights: str, revision: str | None, *, marker: str, what: str, flag: str,
                  timeout: float = HUB_TIMEOUT_S) -> None:
    """``weights`` is a ``what`` folder (it holds ``marker``), or a hub id cached or served; else one line.

    ``flag`` is the option that names the weights (``--model-args``, ``--detector-args``), for the fix.
    """
    fix = f"pass {flag} weights=LOCAL_FOLDER (a folder written by save_pretrained())"
    local = Path(weights).expanduser()
    if local.exists():
        if not (local / marker).is_file():
            raise HarnessError(not_a_folder_of(local, marker, what, fix))
        return
    if not HUB_ID.fullmatch(weights):
        raise HarnessError(f"{flag} weights={weights}: no such folder; {fix} or a hub id")
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(weights, marker, revision=revision), str):
        return
    if hub_offline():
        raise HarnessError(f"{flag} weights={weights}: not in the Hugging Face cache and the hub is off "
                           f"(HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE); {fix}")
    try:
        get_hf_file_metadata(hf_hub_url(weights, marker, revision=revision), timeout=timeout)
    except Exception as exc:  # network, HTTP and hub errors: their classes differ between hub versions
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise HarnessError(f"{flag} weights={weights}: the Hugging Face hub does not serve it "
                           f"({type(exc).__name__}: {reason}); offline, {fix}") from None


def check_pipeline_weights(options: dict) -> None:
    """A diffusers model adapter's ``weights`` (and ``revision``), checked as :func:`check_weights` does."""
    check_weights(str(options["weights"]), options.get("revision"), marker="model_index.json",
                  what="diffusers pipeline", flag="--model-args")


def pipeline_source(weights: str, revision: str | None) -> tuple[str, str | None]:
    """``(weights, revision)`` to pass to ``from_pretrained``: a local pipeline folder (no revision) or a hub id."""
    local = Path(weights).expanduser()
    if not local.exists():
        return weights, revision
    if not (local / "model_index.json").is_file():
        raise HarnessError(not_a_folder_of(local, "model_index.json", "diffusers pipeline",
                                           "pass a folder written by save_pretrained() or a hub id"))
    return str(local), None  # a revision means nothing for a local folder
