"""The ``Device`` interface and the shell-level logic every backend shares.

A backend supplies four primitives (``_shell``, ``_push``, ``_pull``, ``connect``/``close``); everything
else — exit codes through a sentinel, content-addressed pushes verified by ``sha256sum`` on the device,
detached runs with a pid/rc/done run folder, polling, killing, the boot id — is plain shell run through
them, so the adb-shell, adb-binary and local backends behave the same.

Every command line is built from argv lists by :func:`sh_join` (each word quoted by :func:`q`); only shell
operators (``&&``, ``;``, redirections) are written literally, so no value (a path, a name) is ever parsed
as shell syntax.
"""

from __future__ import annotations

import hashlib
import io
import shlex
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from harness.device.errors import CommandFailed, CommandTimeout, ConfigError, DeviceDisconnected, DeviceError

SENTINEL = "__RC__="
DEFAULT_WORKDIR = "/data/local/tmp/bench"

# The detached-run wrapper (docs/device.md, 'Detached runs'): runs ./cmd.sh under `toybox time -v` if available, samples
# /proc/PID/status of the benchmark every $2 seconds (5 Hz by default) on the phone, optionally
# `dumpsys meminfo` on the first and then every 5th sample, then writes rc and a `done` marker.
# No adb stream stays open.
RUN_SH = r"""#!/system/bin/sh
# run.sh RUNDIR SAMPLE_PERIOD_S MEMINFO(0|1) -- written by dreamlite-harness device/
R="$1"; PERIOD="${2:-0.2}"; MEMINFO="${3:-0}"
cd "$R" || exit 1
echo $$ > pid
cut -d' ' -f1 /proc/uptime > t_start
if command -v toybox >/dev/null 2>&1 && toybox time -v true >/dev/null 2>&1; then
  toybox time -v sh -c 'echo $$ > bench.pid; exec sh ./cmd.sh 2> stderr.txt' > stdout.txt 2> time.txt < /dev/null &
else
  sh -c 'echo $$ > bench.pid; exec sh ./cmd.sh 2> stderr.txt' > stdout.txt 2> /dev/null < /dev/null &
fi
T=$!
n=0
while kill -0 $T 2>/dev/null; do
  P=$(cat bench.pid 2>/dev/null)
  if [ -n "$P" ]; then
    S=$(grep -E '^(VmRSS|VmHWM|RssAnon|RssFile|RssShmem):' /proc/$P/status 2>/dev/null | tr -s ' \t\n' '   ')
    [ -n "$S" ] && echo "$(cut -d' ' -f1 /proc/uptime) $S" >> mem.tsv
    if [ "$MEMINFO" = 1 ] && [ $((n % 5)) = 0 ]; then
      U=$(cut -d' ' -f1 /proc/uptime)
      dumpsys meminfo $P 2>/dev/null | grep -E 'TOTAL|Gfx dev|GL mtrack|EGL mtrack' | sed "s/^/$U /" >> meminfo.tsv
    fi
    n=$((n+1))
  fi
  sleep "$PERIOD"
done
wait $T
rc=$?
cut -d' ' -f1 /proc/uptime > t_end
echo $rc > rc.tmp && mv rc.tmp rc
touch done
"""
RUN_SH_SHA256 = hashlib.sha256(RUN_SH.encode()).hexdigest()


@dataclass
class CommandResult:
    """Output (stdout and stderr merged, as shell v1 does) and the exit code from the sentinel."""

    stdout: str
    exit_code: int
    wall_s: float


@dataclass
class RunState:
    """State of a detached run folder on the device.

    ``unlaunched``: the folder exists but ``run.sh`` never started in it (no pid), so it was not an attempt.
    """

    state: Literal["running", "exited", "lost", "absent", "unlaunched"]
    exit_code: int | None = None


def q(word: object) -> str:
    """One shell word, quoted for the device's sh (mksh, dash and bash agree on single quotes)."""
    return shlex.quote(str(word))


def sh_join(argv: Iterable[object]) -> str:
    """A command line from an argv list: every word quoted by :func:`q`."""
    return " ".join(q(word) for word in argv)


def device_path_problem(path: object) -> str | None:
    """Why ``path`` cannot name a device folder (``workdir``, ``sysroot``), or None if it can."""
    if not isinstance(path, str):
        return f"must be a string, got {type(path).__name__}"
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return "contains a control character (newline, tab, NUL...); give a plain path"
    return None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a local file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def split_sentinel(raw: str, what: str) -> tuple[str, int]:
    """Strip the ``__RC__=N`` sentinel; a missing one means the command never finished."""
    idx = raw.rfind(SENTINEL)
    if idx < 0 or not raw[idx + len(SENTINEL):].strip().isdigit():
        raise CommandTimeout(f"{what}: output ended without the exit-code sentinel (command cut short)")
    return raw[:idx], int(raw[idx + len(SENTINEL):].strip())


class ShellDevice:
    """Shared logic over a backend's shell/push/pull primitives; not thread-safe by design.

    ``workdir`` is where runs and the artifact cache live (``/data/local/tmp/bench`` on a phone);
    ``sysroot`` prefixes ``/sys`` and the boot-id path (empty on a phone, a sandbox in tests).
    """

    kind = "abstract"
    transport = "none"

    def __init__(self, serial: str, *, workdir: str = DEFAULT_WORKDIR, sysroot: str = ""):
        for what, value in (("workdir", workdir), ("sysroot", sysroot)):
            if why := device_path_problem(value):
                raise ConfigError(f"{serial}: {what} {value!r} {why}")
        self.serial = serial
        self.workdir = workdir.rstrip("/") or "/"
        self.sysroot = sysroot.rstrip("/")
        self._owner = threading.get_ident()
        self._helpers_ok = False

    # -- backend primitives ----------------------------------------------------------------------------
    def connect(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _shell(self, command: str, timeout_s: float) -> str:
        raise NotImplementedError

    def _push(self, local: Path | io.BytesIO, remote: str, timeout_s: float) -> None:
        raise NotImplementedError

    def _pull(self, remote: str, local: io.BytesIO, timeout_s: float) -> None:
        raise NotImplementedError

    def reconnect(self, budget_s: float = 60.0, first_delay_s: float = 0.5) -> None:
        """Close and connect again with exponential backoff until ``budget_s`` is spent."""
        deadline = time.monotonic() + budget_s
        delay = first_delay_s
        while True:
            self.close()
            try:
                self.connect()
                return
            except DeviceDisconnected as exc:
                if time.monotonic() + delay > deadline:
                    raise DeviceDisconnected(f"{self.serial}: could not reconnect within {budget_s:.0f} s: {exc}") \
                        from exc
                time.sleep(delay)
                delay = min(delay * 2, 60.0)

    # -- shared operations -----------------------------------------------------------------------------
    def _check_thread(self) -> None:
        if threading.get_ident() != self._owner:
            raise DeviceError(f"{self.serial}: a Device is bound to the thread that made it; open one per thread")

    def run(self, command: str, timeout_s: float = 30.0, *, check: bool = False) -> CommandResult:
        """Run ``command`` in ``workdir``; the exit code comes from an ``echo __RC__=$?`` sentinel."""
        self._check_thread()
        wrapped = f"cd {q(self.workdir)} 2>/dev/null; ( {command}\n) 2>&1 < /dev/null; echo {SENTINEL}$?"
        t0 = time.perf_counter()
        raw = self._shell(wrapped, timeout_s)
        out, rc = split_sentinel(raw, f"{self.serial}: {command[:60]!r}")
        result = CommandResult(out, rc, time.perf_counter() - t0)
        if check and rc != 0:
            raise CommandFailed(f"{self.serial}: {command[:80]!r} exited {rc}: {out.strip()[-300:]}")
        return result

    def sha256(self, remote: str) -> str | None:
        """The device-side sha256 of a file, or None if it does not exist."""
        # hashed from stdin: sha256sum escapes a file name holding a backslash or newline with a leading '\\'
        res = self.run(f"{sh_join(['test', '-f', remote])} && sha256sum < {q(remote)}", timeout_s=120)
        if res.exit_code != 0 or not res.stdout.strip():
            return None
        return res.stdout.split()[0].lower()

    def push(self, local: str | Path, remote: str, *, verify: bool = True, timeout_s: float = 30.0) -> str:
        """Push a file (via ``remote.part`` then rename); verify its sha256 on the device; return the hash."""
        self._check_thread()
        local = Path(local)
        if not local.is_file():
            raise DeviceError(f"{local}: artifact not found; fix the path in the sweep file")
        digest = sha256_file(local) if verify else ""
        part = remote + ".part"
        self._push(local, part, timeout_s)
        if verify:
            got = self.sha256(part)
            if got != digest:
                self.run(sh_join(["rm", "-f", part]))
                raise DeviceError(f"{self.serial}: push of {local} to {remote} corrupted (sha256 {got} != {digest})")
        self.run(sh_join(["mv", "-f", part, remote]), check=True)
        return digest

    def write_bytes(self, remote: str, data: bytes, timeout_s: float = 30.0) -> None:
        """Create or replace a small device file with ``data``."""
        self._check_thread()
        self._push(io.BytesIO(data), remote, timeout_s)

    def read_bytes(self, remote: str, timeout_s: float = 60.0) -> bytes:
        """Pull a device file into memory (raises :class:`DeviceError` if it is missing)."""
        self._check_thread()
        buf = io.BytesIO()
        self._pull(remote, buf, timeout_s)
        return buf.getvalue()

    def read_many(self, remotes: list[str], timeout_s: float = 120.0,
                  sizes: list[int] | None = None) -> list[bytes]:
        """Pull several device files into memory, in order (backends may pull them through one stream and use
        the expected ``sizes`` to receive them in place)."""
        return [self.read_bytes(remote, timeout_s) for remote in remotes]

    def ensure_artifact(self, local: str | Path, *, sha256: str | None = None,
                        timeout_s: float = 600.0) -> tuple[str, str]:
        """Content-addressed push: ``workdir/cas/<sha256>``; pushed only if absent or different.

        ``sha256`` (the local file's, when already known) saves hashing it again.
        """
        digest = sha256 or sha256_file(local)
        remote = f"{self.workdir}/cas/{digest}"
        if self.sha256(remote) != digest:
            self.run(sh_join(["mkdir", "-p", f"{self.workdir}/cas"]), check=True)
            pushed = self.push(local, remote, verify=True, timeout_s=timeout_s)
            if pushed != digest:
                self.run(sh_join(["rm", "-f", remote]))
                raise DeviceError(f"{local} changed while the sweep ran (sha256 {pushed} != {digest}); rerun")
        return digest, remote

    def ensure_helpers(self) -> str:
        """Install ``run.sh`` (verified by hash) and return its device path."""
        remote = f"{self.workdir}/run.sh"
        if not self._helpers_ok:
            self.run(sh_join(["mkdir", "-p", self.workdir]), check=True)
            if self.sha256(remote) != RUN_SH_SHA256:
                self.write_bytes(remote, RUN_SH.encode())
                if self.sha256(remote) != RUN_SH_SHA256:
                    raise DeviceError(f"{self.serial}: could not install {remote} (hash mismatch)")
            self._helpers_ok = True
        return remote

    def spawn(self, command: str, rundir: str, *, sample_period_s: float = 0.2, meminfo: bool = False,
              links: dict[str, str] | None = None) -> None:
        """Start ``command`` detached in ``rundir`` (pid, rc, done, time.txt, mem.tsv there); returns at once.

        ``links`` maps file names in the run folder to device paths (the artifact cache), symlinked first.
        """
        run_sh = self.ensure_helpers()
        steps = [["rm", "-rf", rundir], ["mkdir", "-p", rundir],
                 *(["ln", "-sf", target, f"{rundir}/{name}"] for name, target in (links or {}).items())]
        self.run(" && ".join(sh_join(step) for step in steps), check=True)
        self.write_bytes(f"{rundir}/cmd.sh", f"exec {command}\n".encode())
        pid = q(f"{rundir}/pid")
        wrapper = sh_join(["sh", run_sh, rundir, f"{sample_period_s:g}", int(meminfo)])
        launch = (f"cd {q(rundir)} && nohup {wrapper} > /dev/null 2>&1 < /dev/null & "
                  f"i=0; while [ ! -s {pid} ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; "
                  f"[ -s {pid} ] && echo launched")
        res = self.run(launch, check=True)
        if "launched" not in res.stdout:
            raise DeviceError(f"{self.serial}: could not launch run in {rundir}: {res.stdout[-200:]}")

    def spawn_once(self, command: str, rundir: str, **options: Any) -> None:
        """:meth:`spawn` unless a previous try (cut off by a disconnect) launched it already."""
        if self.poll(rundir).state not in ("running", "exited"):
            self.spawn(command, rundir, **options)

    def linked_artifacts(self, artifacts: Iterable[tuple[str, str, str]], verified: set[tuple[str, str | None]],
                         boot: str | None, call: Any = None) -> dict[str, str]:
        """Ensure ``(name, local path, sha256)`` artifacts in the cache (once per boot: ``verified`` remembers)
        and return the run-folder links to them; ``call`` wraps each device call (reconnects)."""
        call = call or (lambda fn: fn())
        links = {}
        for name, local, sha in artifacts:
            if (sha, boot) not in verified:
                call(lambda local=local, sha=sha: self.ensure_artifact(local, sha256=sha))
                verified.add((sha, boot))
            links[name] = f"{self.workdir}/cas/{sha}"
        return links

    def poll(self, rundir: str) -> RunState:
        """``exited`` (with rc) once ``done`` exists, ``running`` while the wrapper lives, ``unlaunched`` if the
        wrapper never wrote its pid (the folder was made, the launch never happened), else ``lost``."""
        d, done, rc, pid = (q(f"{rundir}{name}") for name in ("", "/done", "/rc", "/pid"))
        res = self.run(
            f"if [ ! -d {d} ]; then echo ABSENT; elif [ -e {done} ]; then echo EXITED $(cat {rc}); "
            f"elif [ ! -s {pid} ]; then echo UNLAUNCHED; elif kill -0 \"$(cat {pid})\" 2>/dev/null; "
            f"then echo RUNNING; else echo LOST; fi", timeout_s=15)
        words = res.stdout.split()
        if words[:1] == ["EXITED"]:
            return RunState("exited", int(words[1]) if len(words) > 1 and words[1].lstrip("-").isdigit() else None)
        states = {"RUNNING": "running", "ABSENT": "absent", "UNLAUNCHED": "unlaunched"}
        return RunState(states.get(words[0] if words else "", "lost"))

    def kill(self, rundir: str, grace_s: float = 3.0) -> None:
        """TERM then KILL the benchmark of a run folder; the wrapper still writes rc and done."""
        self.run(f"P=$(cat {q(rundir + '/bench.pid')} 2>/dev/null); [ -n \"$P\" ] && kill -TERM $P 2>/dev/null; "
                 f"i=0; while [ -n \"$P\" ] && kill -0 $P 2>/dev/null && [ $i -lt {int(grace_s * 5)} ]; "
                 f"do sleep 0.2; i=$((i+1)); done; [ -n \"$P\" ] && kill -KILL $P 2>/dev/null; true",
                 timeout_s=grace_s + 15)

    def boot_id(self) -> str:
        """The kernel's boot id (changes on every reboot)."""
        res = self.run(sh_join(["cat", f"{self.sysroot}/proc/sys/kernel/random/boot_id"]), timeout_s=15, check=True)
        return res.stdout.strip()

    def __enter__(self) -> ShellDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
