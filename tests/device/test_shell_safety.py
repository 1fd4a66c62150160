"""No sweep value reaches a shell unquoted; a job that was never launched is launched on resume.

Hostile strings (command substitution, backticks, ``;``, ``|``, ``&``, redirections, quotes, newlines) go into
every sweep field that reaches a device or host command. Each field either carries them inert (quoted: the
sweep still measures, the benchmark gets the exact value) or is refused by validation with one line naming
the sweep file and the field. A marker folder proves that no injected ``touch`` ever ran.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from harness.device.base import sh_join
from harness.device.cli import main as device_main
from harness.device.errors import ConfigError
from harness.device.local import LocalDevice
from harness.device.orchestrator import SweepRunner
from harness.device.record import read_records
from harness.device.sweep import expand, load_sweep
from tests.device.conftest import FAKE_BENCH, FAKEBIN, make_device, make_sandbox, write_sweep
from tests.peers.fake_adbd import FakeAdbd

yaml = pytest.importorskip("yaml")
pytestmark = pytest.mark.slow


def hostile(markers: Path, tag: str, *, newline: bool = True) -> str:
    """A string that creates a file under ``markers`` for each shell construct a shell would run."""
    m = f"{markers}/{tag}"
    text = (f"a $(touch {m}.dollar) `touch {m}.tick` ;touch {m}.semi |touch {m}.pipe &touch {m}.amp "
            f">{m}.redir 'q'$(touch {m}.squote)' \"$(touch {m}.dquote)\" \\'$(touch {m}.escaped)")
    return text + (f"\ntouch {m}.newline" if newline else "")


COMMAND = (f"{sys.executable} {{bench main}} --steps {{steps}} --height {{height}} --width {{width}} "
           "--iters {iters} --warmup {warmup} --metrics-out {metrics_out} --stage-ms 2 "
           "--prompt {prompt} --model {model+v1@w=8,a} --output-prefix {oprefix}")


def sweep_data(files: dict[str, str], device: dict, prompt: str) -> dict:
    """A sweep whose names are legitimate but need quoting (spaces, ``+@=,``)."""
    return {"name": "shell safety", "steps": [1], "resolutions": ["64x64"], "iters_per_process": 2,
            "warmup_iters": 1, "poll_s": 0.05, "job_timeout_s": 20, "max_attempts": 1,
            "cooldown": {"max_s": 1, "poll_s": 0.05}, "device": device,
            "variants": [{"name": "fake fp32", "runner": "jsonl", "command": COMMAND, "files": files,
                          "args": {"prompt": prompt, "oprefix": "out "}, "outputs": ["out 1.png"]}]}


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


@pytest.mark.parametrize("backend", ["local", "adb"])
def test_hostile_values_reach_commands_inert(tmp_path, adb_key, backend):
    markers = tmp_path / "markers"
    markers.mkdir()
    root = tmp_path / hostile(markers, "dir", newline=False)  # folder names may hold anything but '/' and NUL
    art = root / "artifacts"
    art.mkdir(parents=True)
    shutil.copyfile(FAKE_BENCH, art / "bench.py")
    (art / "model.bin").write_bytes(b"m" * 1234)
    files = {"bench main": str(art / "bench.py"), "model+v1@w=8,a": str(art / "model.bin")}
    prompt = hostile(markers, "prompt")
    phone = make_sandbox(root / "phone")

    def sweep(device: dict) -> int:
        cfg = write_yaml(tmp_path / "cfg" / "s.yaml", sweep_data(files, device, prompt))
        return device_main(["device", "sweep", str(cfg), "--out", str(tmp_path / "out"),
                            "--store", str(tmp_path / "h.db")])

    if backend == "local":
        (phone / "proc/sys/kernel/random").mkdir(parents=True)
        (phone / "proc/sys/kernel/random/boot_id").write_text("local-boot\n")
        rc = sweep({"backend": "local", "workdir": str(root / "work"), "sysroot": str(phone)})
    else:
        pub = Path(str(adb_key) + ".pub").read_bytes()
        with FakeAdbd(phone, known_keys=[pub], path_prepend=[str(FAKEBIN), str(Path(sys.executable).parent)]) as d:
            rc = sweep({"backend": "adb", "host": f"127.0.0.1:{d.port}", "key": str(adb_key),
                        "workdir": f"{d.sandbox}/data/local/tmp/bench", "sysroot": str(d.sandbox)})
    assert sorted(p.name for p in markers.iterdir()) == []  # nothing injected ever ran
    assert rc == 0
    (rec,) = read_records(tmp_path / "out")
    assert rec["status"] == "ok", rec["error"]
    assert rec["runner_meta"]["prompt"] == prompt  # one argument, byte for byte
    assert rec["runner_meta"]["model_bytes"] == 1234  # {model+v1@w=8,a} named the linked artifact
    assert (tmp_path / "out" / "raw" / rec["job_id"] / "1" / "out 1.png").is_file()
    # the probes read the sandbox's sysfs through the hostile sysroot
    assert rec["cpu_max_freq_khz_before"]["policy7"] == 3302400 and rec["gpu_freq_hz_before"] == 903000000


BAD = ["$(touch M)", "`touch M`", "a;touch M", "a|touch M", "a\ntouch M", "it's", 'say "M"', "a&touch M"]
NAME_FIELDS = {
    "name": (lambda d, bad: d.update(name=bad), "name"),
    "variant name": (lambda d, bad: d["variants"][0].update(name=bad), "variants[0].name"),
    "file name": (lambda d, bad: d["variants"][0]["files"].update({bad: str(FAKE_BENCH)}), "variants[0].files"),
    "output name": (lambda d, bad: d["variants"][0].update(outputs=[bad]), "variants[0].outputs"),
}


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("field", sorted(NAME_FIELDS))
def test_names_that_become_paths_are_refused_in_one_line(tmp_path, field, bad):
    data = sweep_data({"bench main": str(FAKE_BENCH), "model+v1@w=8,a": str(FAKE_BENCH)}, {}, "p")
    edit, label = NAME_FIELDS[field]
    edit(data, bad)
    path = write_yaml(tmp_path / "s.yaml", data)
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: {label}") and "\n" not in msg, msg


@pytest.mark.parametrize("key", ["workdir", "sysroot"])
@pytest.mark.parametrize("bad", ["/data/local/tmp/a\ntouch M", "/data/x\x00y", 3])
def test_device_paths_with_control_characters_are_refused(tmp_path, key, bad):
    data = sweep_data({"bench main": str(FAKE_BENCH), "model+v1@w=8,a": str(FAKE_BENCH)}, {key: bad}, "p")
    path = write_yaml(tmp_path / "s.yaml", data)
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: device.{key}") and "\n" not in msg, msg


def test_placeholder_inside_quotes_is_refused(tmp_path):
    data = sweep_data({"bench main": str(FAKE_BENCH), "model+v1@w=8,a": str(FAKE_BENCH)}, {}, "a cat")
    data["variants"][0]["command"] = COMMAND.replace("--prompt {prompt}", "--prompt '{prompt}'")
    path = write_yaml(tmp_path / "s.yaml", data)
    with pytest.raises(ConfigError, match=r"variants\[0\]\.command: placeholder \{prompt\} is inside quotes"):
        load_sweep(path)


@pytest.mark.parametrize("backend", ["local", "adb"])
def test_sh_join_round_trips_every_character(request, tmp_path, backend):
    markers = tmp_path / "markers"
    markers.mkdir()
    values = ["", "plain", "a b", "tab\there", hostile(markers, "v"), "it's", 'say "hi"', "back\\slash\\", "*",
              "~", "-n", "%s", "$HOME", "!", "#x", "{}", "é ü"]
    dev = LocalDevice(str(tmp_path / "work")) if backend == "local" else request.getfixturevalue("device")
    res = dev.run(sh_join(["printf", "[%s]", *values]), check=True)
    assert res.stdout == "".join(f"[{v}]" for v in values)
    assert sorted(p.name for p in markers.iterdir()) == []


def test_job_never_launched_is_launched_on_resume_not_lost(adbd, adb_key, tmp_path, monkeypatch):
    """The host dies after creating the run folder on the phone but before launching: not an attempt."""
    sweep = load_sweep(write_sweep(tmp_path / "cfg", steps="[1]"))
    sweep.max_attempts = 1
    out = tmp_path / "out"
    dev = make_device(adbd, adb_key)
    real_run = dev.run

    def host_dies_at_launch(command: str, *args, **kwargs):
        if "nohup" in command:
            raise KeyboardInterrupt("host died before launching")
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(dev, "run", host_dies_at_launch)
    with pytest.raises(KeyboardInterrupt):
        SweepRunner(sweep, dev, out).run()
    (job,) = expand(sweep, dev.serial)
    rundir = Path(f"{adbd.sandbox}/data/local/tmp/bench/runs/{sweep.name}/{job.job_id}/1")
    assert (rundir / "cmd.sh").is_file() and not (rundir / "pid").exists()  # folder made, never launched
    assert read_records(out) == []

    fresh = make_device(adbd, adb_key)
    fresh.connect()
    assert fresh.poll(str(rundir)).state == "unlaunched"
    fresh.close()
    stats = SweepRunner(sweep, make_device(adbd, adb_key), out).run()
    (rec,) = read_records(out)
    assert (rec["status"], rec["attempt"]) == ("ok", 1), rec
    assert stats["spawned"] == 1 and stats["collected_after_resume"] == 0
    assert sum("nohup sh" in s for s in adbd.opens) == 1


def test_launched_run_that_died_is_still_lost(device, adbd, tmp_path):
    """A run whose wrapper started (pid written) and then vanished stays ``lost``: that was an attempt."""
    rundir = f"{adbd.sandbox}/data/local/tmp/bench/runs/x/dead/1"
    device.run(sh_join(["mkdir", "-p", rundir]), check=True)
    assert device.poll(rundir).state == "unlaunched"
    device.run(f"sh -c 'echo $$' > {sh_join([rundir + '/pid'])}", check=True)  # a pid that has exited
    assert device.poll(rundir).state == "lost"
