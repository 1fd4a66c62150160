"""Fixtures: a phone-like sandbox, the loopback fake adbd, an adb-shell device on it, sweep files."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.peers.fake_adbd import FakeAdbd

HERE = Path(__file__).resolve().parent
FAKEBIN = HERE / "fakebin"
FIXTURES = HERE / "fixtures"
FAKE_BENCH = HERE / "fake_bench.py"
FAKE_GEN = HERE / "fake_gen.py"


def make_sandbox(root: Path) -> Path:
    """A folder laid out like the parts of a phone our module reads (sysfs nodes, canned dumpsys)."""
    for policy, (cur, mx) in {"policy0": (1785600, 2265600), "policy2": (2496000, 3148800),
                              "policy7": (2841600, 3302400)}.items():
        d = root / "sys/devices/system/cpu/cpufreq" / policy
        d.mkdir(parents=True, exist_ok=True)
        (d / "scaling_cur_freq").write_text(f"{cur}\n")
        (d / "scaling_max_freq").write_text(f"{mx}\n")
    gpu = root / "sys/class/kgsl/kgsl-3d0"
    gpu.mkdir(parents=True, exist_ok=True)
    (gpu / "gpuclk").write_text("903000000\n")
    shutil.copytree(FIXTURES / "android", root / "android", dirs_exist_ok=True)
    (root / "data/local/tmp/bench").mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def adb_key(tmp_path_factory) -> Path:
    """An RSA key pair made with adb-shell's keygen (adbkey + adbkey.pub)."""
    pytest.importorskip("adb_shell")
    from adb_shell.auth.keygen import keygen

    path = tmp_path_factory.mktemp("keys") / "adbkey"
    keygen(str(path))
    return path


@pytest.fixture
def sandbox(tmp_path) -> Path:
    return make_sandbox(tmp_path / "phone")


@pytest.fixture
def adbd(sandbox, adb_key):
    """The fake adbd on 127.0.0.1 (port 0), trusting ``adb_key``; stub Android tools on its PATH."""
    pub = Path(str(adb_key) + ".pub").read_bytes()
    with FakeAdbd(sandbox, known_keys=[pub], path_prepend=[str(FAKEBIN), str(Path(sys.executable).parent)]) as d:
        yield d


def make_device(adbd: FakeAdbd, key: Path, **kw):
    from harness.device.adb import AdbShellDevice

    opts = {"key_path": key, "workdir": f"{adbd.sandbox}/data/local/tmp/bench", "sysroot": str(adbd.sandbox),
            "transport_timeout_s": 5.0, "auth_timeout_s": 2.0, "connect_timeout_s": 5.0, **kw}
    return AdbShellDevice("127.0.0.1", adbd.port, **opts)


@pytest.fixture
def device(adbd, adb_key):
    dev = make_device(adbd, adb_key)
    dev.connect()
    yield dev
    dev.close()


def write_sweep(folder: Path, body: str = "", *, bench_args: str = "", name: str = "t", steps: str = "[1, 2]",
                resolutions: str = '["64x64"]', repeats: int = 1, extra_variant: str = "") -> Path:
    """A TOML sweep running ``fake_bench.py`` through the jsonl runner."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.toml"
    command = (f"{sys.executable} {{bench}} --steps {{steps}} --height {{height}} --width {{width}} --iters {{iters}} "
               f"--warmup {{warmup}} --metrics-out {{metrics_out}} --stage-ms 2 {bench_args}")
    path.write_text(textwrap.dedent(f"""
        name = "{name}"
        steps = {steps}
        resolutions = {resolutions}
        repeats = {repeats}
        iters_per_process = 2
        warmup_iters = 1
        poll_s = 0.05
        job_timeout_s = 20
        max_attempts = 2
        {body}
        [cooldown]
        min_s = 0
        max_s = 1
        poll_s = 0.05

        [[variants]]
        name = "fake-fp32"
        runner = "jsonl"
        command = "{command}"
        files = {{ bench = "{FAKE_BENCH}" }}
        outputs = ["out_1.png"]
        runtime = "fake"
        backend = "cpu"
        precision = "fp32"
        {extra_variant}
    """))
    return path


def write_gen_sweep(folder: Path, *, mode: str = "batch", per_image_ms: float = 20, size: str = "64x64",
                    gen_args: str = "", name: str = "g", variant: str = "fake-gen", extra_variant: str = "") -> Path:
    """A TOML sweep whose variant makes images with ``fake_gen.py``: a batch or a one-process-per-image template."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "sweep.toml"
    py = sys.executable
    if mode == "batch":
        generate = (f"{py} {{gen}} --prompts {{prompts}} --outdir {{outdir}} --metrics-out {{metrics_out}} "
                    f"--per-image-ms {per_image_ms} {gen_args}")
    else:
        generate = (f"{py} {{gen}} --prompt {{prompt}} --seed {{seed}} --output {{output}} --width {{width}} "
                    f"--height {{height}} --steps {{steps}} --format mnn --per-image-ms {per_image_ms} {gen_args}")
    path.write_text(textwrap.dedent(f"""
        name = "{name}"
        steps = [4]
        resolutions = ["{size}"]
        job_timeout_s = 30

        [[variants]]
        name = "{variant}"
        runner = "{'jsonl' if mode == 'batch' else 'mnn'}"
        command = "{py} {{gen}} --prompts {{steps}}"
        generate = "{generate}"
        files = {{ gen = "{FAKE_GEN}" }}
        runtime = "fake"
        backend = "cpu"
        precision = "fp32"
        {extra_variant}
    """))
    return path


@dataclass
class Phone:
    adbd: FakeAdbd
    faults: Path
    log: Path
    key: Path

    @property
    def workdir(self) -> str:
        return f"{self.adbd.sandbox}/data/local/tmp/bench"

    def options(self) -> dict[str, str]:
        """The ``phone`` model's device options for this fake."""
        return {"host": f"127.0.0.1:{self.adbd.port}", "key": str(self.key), "workdir": self.workdir,
                "sysroot": str(self.adbd.sandbox)}

    def model(self, sweep: Path, **options: object) -> Any:
        from harness.device.phone_model import PhoneModel

        return PhoneModel(sweep=str(sweep), poll_window=1.0, **self.options(), **options)

    def model_args(self, sweep: Path, **options: object) -> str:
        """The same as ``--model-args`` text."""
        return ",".join(f"{k}={v}" for k, v in {"sweep": sweep, **self.options(), **options}.items())

    def fault(self, **kinds: list[str]) -> None:
        self.faults.write_text(json.dumps(kinds))

    def generated(self) -> Counter:
        """How many times each (prompt or key, seed) was really generated."""
        return Counter(self.log.read_text().splitlines()) if self.log.is_file() else Counter()

    def out_pngs(self) -> list[Path]:
        return sorted(Path(self.workdir, "gen").glob("*/*/*/out/*.png"))


def phone_env(tmp_path: Path) -> dict[str, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return {"FAKE_GEN_FAULTS": str(tmp_path / "faults.json"), "FAKE_GEN_LOG": str(tmp_path / "gen.log")}


@contextlib.contextmanager
def fake_phone(sandbox: Path, adb_key: Path, tmp_path: Path, stubs: list[str] = ()):
    """The fake adbd with the Android stubs (and ``stubs`` first) on its PATH, faults and log set for fake_gen."""
    pub = Path(str(adb_key) + ".pub").read_bytes()
    with FakeAdbd(sandbox, known_keys=[pub], path_prepend=[*stubs, str(FAKEBIN), str(Path(sys.executable).parent)],
                  env=phone_env(tmp_path)) as adbd:
        yield Phone(adbd, tmp_path / "faults.json", tmp_path / "gen.log", adb_key)


@pytest.fixture
def phone(sandbox, adb_key, tmp_path):
    """A fake phone for ``fake_gen.py`` (see :func:`fake_phone`)."""
    with fake_phone(sandbox, adb_key, tmp_path) as p:
        yield p
