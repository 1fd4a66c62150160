"""A run folder's ownership, lock and manifest, and the paths and ids that come from files a user can edit.

A run folder has one owner: :func:`own_run_folder` refuses a folder the harness did not make and holds an
advisory lock (``fcntl.flock`` on ``.harness-lock``) for the life of a run, score or merge command. A plain
process locks the whole folder; a ``--shard I/N`` job shares the folder lock and locks its own shard; the
ranks of one ``accelerate launch``/``torchrun`` launch share rank 0's lock. The kernel drops the lock of a
killed process, so a stale lock never blocks.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from harness.core.errors import HarnessError
from harness.core.fsio import LOCK_FILE, atomic_write_text, is_lock_file, listing
from harness.core.hashing import content_hash
from harness.core.jsonio import dumps, load_json
from harness.core.paths import folder_arg, inside, safe_relpath
from harness.core.version import __version__
from harness.engine.distributed import Shard, launch_identity

if TYPE_CHECKING:
    from harness.store import Store


def open_manifest(out: Path, run_id: str, config: dict[str, Any], provenance: dict[str, Any]) -> None:
    """Create ``run.json`` or check that the folder holds this same run (then it resumes)."""
    path = out / "run.json"
    if path.is_file():
        manifest = load_json(path, "it is written by `harness run`; move the folder away and rerun")
        if manifest.get("run_id") != run_id:
            old = manifest.get("config", {})
            changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise HarnessError(
                f"{out}: holds run {manifest.get('run_id')} made with other settings (differs in: "
                f"{', '.join(changed)}); rerun with the same settings to resume, or pass another --out"
            )
        return
    manifest = {"run_id": run_id, "config": config, "provenance": provenance, "created": time.time(),
                "environment": environment()}
    atomic_write_text(path, dumps(manifest, indent=2, sort_keys=True) + "\n")


# -- run-folder ownership ----------------------------------------------------------------------------
#: what a scoring writes at the top of its folder: never overwritten unless a manifest of ours accounts for it
SCORING_OUTPUTS = ("summary.json", "results.jsonl", "result.json", "records")


def _ours(path: Path, keys: tuple[str, ...]) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and all(k in data for k in keys)


def is_run_folder(folder: Path) -> bool:
    """A folder made by ``harness run``: its ``run.json`` is one of ours."""
    return _ours(folder / "run.json", ("run_id", "config"))


def is_ours(folder: Path) -> bool:
    """A run or scoring folder of the harness: a ``run.json`` or ``scoring-*.json`` that it wrote."""
    return is_run_folder(folder) or any(_ours(p, ("benchmark", "run_id", "scorer_hash"))
                                        for p in folder.glob("scoring-*.json"))


def check_out_folder(out: Path, stage: str) -> None:
    """Refuse an ``--out`` that is a file, or a folder that is not ours and would lose files to ``stage``.

    ``run`` needs an empty, new or own folder. ``score`` may write into a folder of someone else's images
    (scoring in place, the official layout) unless that folder already holds results we did not write.
    """
    folder_arg(out, flag="--out")
    if not out.is_dir() or is_ours(out):
        return
    if stage == "run":
        entries = sorted(p.name for p in out.iterdir() if not is_lock_file(p.name))
        if entries:
            raise HarnessError(f"--out {out}: not empty ({listing(entries, 3)}) and not a harness run (no run.json "
                               "or scoring-*.json); pass a new or empty folder")
        return
    foreign = [name for name in SCORING_OUTPUTS if (out / name).exists()]
    if foreign:
        raise HarnessError(f"--out {out}: holds {', '.join(foreign)} that the harness did not write (no "
                           "scoring-*.json there); pass --out NEW_FOLDER to keep them")


@contextmanager
def own_run_folder(out: Path, shard: Shard, *, stage: str) -> Iterator[None]:
    """Own ``out`` for the life of a ``run``/``score``/``merge`` command, or a one-line error on every rank.

    Rank 0 of a launch checks the folder and takes the lock; the other ranks of that launch take its answer.
    """
    held: list[IO[str]] = []
    error = None
    if shard.is_main:
        try:
            check_out_folder(out, stage)
            held = _lock(out, shard)
        except (HarnessError, OSError) as exc:
            error = str(exc) if isinstance(exc, HarnessError) else f"--out {out}: cannot lock ({exc})"
    error = shard.share(error)
    if error:
        raise HarnessError(error)
    try:
        yield
    finally:
        if held:
            held[-1].truncate(0)  # the owner record goes with the lock (a killed owner's is only stale text)
        for f in reversed(held):
            f.close()


def _lock(out: Path, shard: Shard) -> list[IO[str]]:
    """flock the folder (exclusive, or shared plus this shard's own lock for ``--shard`` jobs)."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / LOCK_FILE]
    if shard.jobs > 1:
        paths.append(out / f"{LOCK_FILE}-shard-{shard.job}-of-{shard.jobs}")
    held: list[IO[str]] = []
    try:
        for path in paths:
            f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - closed when the command ends
            held.append(f)
            shared = shard.jobs > 1 and path == paths[0]
            try:
                fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except BlockingIOError:
                holders = [out / LOCK_FILE, *sorted(out.glob(f"{LOCK_FILE}-shard-*"))] if path == paths[0] else [path]
                raise HarnessError(f"run folder {out} in use by {_holders(holders)}; wait for it or pass another "
                                   "--out") from None
        mine = held[-1]
        mine.truncate(0)
        mine.write(json.dumps({"pid": os.getpid(), "host": _host(), "started": time.time(),
                               "launch": launch_identity(), "shard": [shard.job, shard.jobs]}) + "\n")
        mine.flush()
    except BaseException:
        for f in held:
            f.close()
        raise
    return held


def _host() -> str:
    import socket

    return socket.gethostname()


def _holders(paths: list[Path]) -> str:
    """The live owners named in these lock files: ``PID 123 (host h, since 12:00:01, launch ...)``."""
    found = []
    for path in paths:
        try:
            owner = json.loads(path.read_text(encoding="utf-8"))
            pid = int(owner["pid"])
            since = time.strftime("%H:%M:%S", time.localtime(float(owner.get("started", 0))))
            job, jobs = (int(x) for x in owner.get("shard") or (0, 1))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if owner.get("host") == _host():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue  # a killed owner's record: the kernel already dropped its lock
            except PermissionError:
                pass
        details = [f"host {owner.get('host')}", f"since {since}"]
        if owner.get("launch"):
            details.append(f"launch {owner['launch']}")
        if jobs > 1:
            details.append(f"--shard {job}/{jobs}")
        found.append(f"PID {pid} ({', '.join(details)})")
    return ", ".join(found) or "another process"


# -- paths that come from files a user can edit --------------------------------------------------------
def recorded_image(out: Path, record: dict[str, Any], where: str) -> Path:
    """``out/<record's image>``: a safe relative path that stays inside ``out``."""
    return inside(out, safe_relpath(record.get("image"), what="image", where=where), what="image")


def scoring_images_dir(out: Path, manifest_path: Path, manifest: dict[str, Any], images: list[str]) -> Path:
    """The image folder a scoring manifest names (a file a user can edit), checked before anything is read.

    ``images_dir`` is relative to ``out``; ``images`` are the relative names the manifest lists. Each name
    must be a safe relative path; a folder outside ``out`` is accepted only when it is a folder that holds
    listed images (the folder that was scored; a benchmark may list a case whose image is missing), else a
    one-line error.
    """
    where = str(manifest_path)
    rel = manifest.get("images_dir")
    if not isinstance(rel, str) or not rel or os.path.isabs(rel):
        raise HarnessError(f"{where}: images_dir {rel!r} must be a path relative to {out}; score again to rewrite it")
    names = [safe_relpath(name, what="image", where=where) for name in images]
    folder = Path(os.path.normpath(out / rel)).resolve()
    base = out.resolve()
    if folder == base or base in folder.parents:
        return folder
    missing = [name for name in names if not inside(folder, name, what="image").is_file()]
    if not folder.is_dir() or len(missing) == len(names):
        raise HarnessError(f"{where}: images_dir {rel!r} resolves to {folder}, outside {out}, and does not hold the "
                           f"images this scoring lists ({listing(missing, 3) or 'no such folder'}); refusing to read "
                           "there: restore the images or score again")
    return folder


# -- store rows of scoring jobs --------------------------------------------------------------------------
def scoring_run_id(run_id: str, folder: Path, out: Path) -> str:
    """``run_id`` when a scoring writes into the folder it scores; otherwise an id of its own.

    A scoring job writing elsewhere (``--out OTHER``) gets its own store row, so it never rewrites the row
    of the run (or folder) whose images it reads.
    """
    if out.resolve() == folder.resolve():
        return run_id
    return f"{run_id}-to-{content_hash(str(out.resolve()), 8)}"


def open_scoring_row(store: Store, benchmark: str, run_id: str, source_id: str, *, of_run: bool, out: Path,
                     images_dir: Path, model: str, provenance: dict[str, Any]) -> None:
    """Mark a scoring job in the store (``run_id`` from :func:`scoring_run_id` of ``source_id``).

    A run scored in its own folder keeps its row's model and settings; any other scoring job writes a row
    of its own, naming the images and the run or folder they came from.
    """
    if of_run and run_id == source_id:
        store.upsert_run(run_id, benchmark, status="scoring", out_dir=str(out))
        return
    config = {"images": str(images_dir.resolve())} | ({"scored_run": source_id} if run_id != source_id else {})
    store.upsert_run(run_id, benchmark, status="scoring", model=model, out_dir=str(out), config=config,
                     provenance=provenance, harness_version=__version__)


def environment() -> dict[str, Any]:
    """Python, platform and the versions of the packages that change numbers."""
    import platform
    from importlib import metadata

    versions = {}
    for dist in ("torch", "diffusers", "transformers", "open_clip_torch", "accelerate", "numpy", "pillow"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions,
            "harness": __version__}


def shard_token(shard: Shard) -> str | None:
    """Record-file token: the shard index first, so each rank's file is recognisable."""
    import uuid

    return f"r{shard.index}of{shard.count}-{os.getpid()}-{uuid.uuid4().hex[:6]}" if shard.count > 1 else None
