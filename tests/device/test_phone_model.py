"""The deployed variant as a model: images made by the sweep's ``generate`` binary on the loopback fake adbd.

The real adb-shell client talks to ``tests/peers/fake_adbd.py``; the binary is ``fake_gen.py`` (deterministic
images from prompt and seed, the JSON-lines contract, faults on request through ``FAKE_GEN_FAULTS``); every
image it really generates is logged (``FAKE_GEN_LOG``), so "collected, not generated again" is counted.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from harness.api.model import FailedImage
from harness.core.errors import HarnessError
from harness.device.errors import ConfigError
from harness.device.phone_model import PhoneModel
from tests.device.conftest import fake_phone, phone_env, write_gen_sweep

pytestmark = pytest.mark.slow

PROMPTS = ["a photo of a cat", "a photo of a dog", "a red apple", "a blue car", "a green bench", "a wine glass"]
SEEDS = [42, 43, 44, 45, 46, 47]


def local_model(sweep: Path, tmp_path: Path, monkeypatch, **options) -> PhoneModel:
    for name, value in phone_env(tmp_path / "local-env").items():
        monkeypatch.setenv(name, value)
    return PhoneModel(sweep=str(sweep), backend="local", workdir=str(tmp_path / "local-phone"), poll_window=1.0,
                      **options)


def pixels(images) -> list[bytes]:
    return [im.tobytes() for im in images]


def test_batch_images_stream_back_with_the_latency_they_took(phone, tmp_path, monkeypatch):
    sweep = write_gen_sweep(tmp_path / "cfg", per_image_ms=40)
    model = phone.model(sweep)
    images = model.generate(PROMPTS, SEEDS)
    assert [im.size for im in images] == [(64, 64)] * 6 and {im.mode for im in images} == {"RGB"}
    for im in images:
        m = im.info["harness"]
        assert m["seconds"] >= 0.04 and len(m["stage_ms"]["unet"]) == 4 and m["stage_ms"]["vae_decode"] > 0
        assert m["device"].startswith("23127PN0CC (adb) fake-gen") and m["peak_rss_kb"] > 1000
        assert m["battery_before"] == 81 and m["charging"] is True and m["throttled"] is False
        assert m["phone"]["thermal_status_before"] == 0 and m["phone"]["attempts"] == 1
    assert len({m.info["harness"]["phone"]["key"] for m in images}) == 6
    assert sorted(phone.generated().values()) == [1] * 6
    # the same binary on this host makes the same pixels
    assert pixels(local_model(sweep, tmp_path, monkeypatch).generate(PROMPTS, SEEDS)) == pixels(images)


def test_one_process_per_image_template_parses_stage_times(phone, tmp_path):
    batch = phone.model(write_gen_sweep(tmp_path / "batch")).generate(PROMPTS[:3], SEEDS[:3])
    model = phone.model(write_gen_sweep(tmp_path / "each", mode="per_image", per_image_ms=40))
    images = model.generate(PROMPTS[:3], SEEDS[:3])
    assert pixels(images) == pixels(batch)  # same binary, same images, whatever the template
    for im in images:
        m = im.info["harness"]
        assert len(m["stage_ms"]["unet"]) == 4 and m["stage_ms"]["text_encoder"] > 0  # MNN AUTOTIME lines
        assert m["seconds"] >= 0.04  # /proc/uptime around the process


def test_edits_push_each_source_once_content_addressed(phone, tmp_path):
    from PIL import Image

    sources = [Image.new("RGB", (64, 64), (200, 30, 30)), Image.new("RGB", (64, 64), (30, 30, 200))]
    model = phone.model(write_gen_sweep(tmp_path / "cfg"))
    first = model.edit(sources, ["make it green", "add a cat"], [1, 2])
    again = model.edit(sources, ["make it blue", "add a dog"], [1, 2])
    assert first[0].tobytes() != first[1].tobytes() and first[0].size == (64, 64)
    assert [im.getpixel((0, 0))[0] > im.getpixel((0, 0))[2] for im in (first[0], again[0])] == [True, True]
    cached = [p for p in Path(phone.workdir, "cas").iterdir() if not p.name.endswith(".part")]
    pushes = [s for s in phone.adbd.opens if s.startswith("sync:")]
    assert len(cached) == 3 and pushes  # the two sources and the generator, once each


def test_per_image_template_without_source_cannot_edit(phone, tmp_path):
    from PIL import Image

    model = phone.model(write_gen_sweep(tmp_path / "cfg", mode="per_image"))
    with pytest.raises(HarnessError, match=r"sweep.toml: variants\[0\].generate \(fake-gen\) has no \{source\}"):
        model.edit([Image.new("RGB", (8, 8))], ["x"], [0])


FAULTS = [  # (kind, template, what the one line says)
    ("crash", "batch", "died on it: exit code 139 (signal 11"),
    ("hang", "batch", "no image for 2 s (hung; killed)"),
    ("garbage", "batch", "not a PNG"),
    ("wrong_size", "batch", "wrong size 32x32, expected 64x64"),
    ("no_file", "batch", "no file written"),
    ("blank", "batch", "blank: every pixel is RGB(0, 0, 0)"),
    ("error", "batch", "the generator reported: runtime error"),
    ("crash", "per_image", "exit code 139 (signal 11"),
    ("hang", "per_image", "killed by timeout"),
    ("garbage", "per_image", "not a PNG"),
]


@pytest.mark.parametrize(("kind", "mode", "says"), FAULTS, ids=[f"{k}-{m}" for k, m, _ in FAULTS])
def test_a_bad_image_fails_its_unit_by_name_and_a_rerun_retries_only_it(phone, tmp_path, kind, mode, says):
    sweep = write_gen_sweep(tmp_path / "cfg", mode=mode)
    phone.fault(**{kind: ["red apple"]})
    model = phone.model(sweep, image_timeout=2)
    out = model.generate(PROMPTS, SEEDS)
    failed = [(i, x) for i, x in enumerate(out) if isinstance(x, FailedImage)]
    assert len(failed) == 1 and PROMPTS[failed[0][0]] == "a red apple" and SEEDS[failed[0][0]] == 44
    reason = failed[0][1].reason
    assert "\n" not in reason and says in reason and "variant fake-gen" in reason, reason
    assert failed[0][1].partial  # where the partial output is on the device
    assert sum(not isinstance(x, FailedImage) for x in out) == 5
    made = phone.generated()
    assert all(n == 1 for n in made.values()) and len([k for k in made if not k.endswith(" 44")]) == 5
    phone.fault()  # cleared: the rerun (a new process) generates the failed image only
    images = phone.model(sweep, image_timeout=2).generate(PROMPTS, SEEDS)
    assert len(images) == 6 and all(im.size == (64, 64) for im in images)
    again = phone.generated() - made
    assert sum(again.values()) == 1 and next(iter(again)).split()[-1] == "44", again


def test_disconnects_mid_batch_lose_and_repeat_nothing(phone, tmp_path, monkeypatch):
    sweep = write_gen_sweep(tmp_path / "cfg", per_image_ms=150)
    phone.adbd.inject("drop", "shell:", after=6, times=3)
    model = phone.model(sweep)
    images = model.generate(PROMPTS, SEEDS)
    assert [k for k, _ in phone.adbd.fired] == ["drop"] * 3 and model.generator.session.stats["disconnects"] == 3
    assert sorted(phone.generated().values()) == [1] * 6
    assert pixels(images) == pixels(local_model(sweep, tmp_path, monkeypatch).generate(PROMPTS, SEEDS))


def test_reboot_mid_batch_collects_what_was_written_and_makes_only_the_rest(phone, tmp_path):
    sweep = write_gen_sweep(tmp_path / "cfg", per_image_ms=400)
    written: list[str] = []

    def reboot_after_two() -> None:
        deadline = time.time() + 30
        while time.time() < deadline and len(phone.out_pngs()) < 2:
            time.sleep(0.02)
        written.extend(p.stem for p in phone.out_pngs())
        phone.adbd.reboot()

    watcher = threading.Thread(target=reboot_after_two)
    watcher.start()
    model = phone.model(sweep)
    images = model.generate(PROMPTS, SEEDS)
    watcher.join()
    assert phone.adbd.reboots == 1 and model.generator.session.stats["reboots"] == 1
    assert len(images) == 6 and len(written) >= 2
    made = phone.generated()
    logged = {model.request_key(p, s): f"{model.request_key(p, s)} {s}" for p, s in zip(PROMPTS, SEEDS, strict=True)}
    assert all(made[logged[k]] == 1 for k in written)  # written before the reboot: collected, not made again
    assert sum(made.values()) <= 7 and {m.info["harness"]["phone"]["attempts"] for m in images} == {2}


def test_a_phone_without_space_for_the_batch_is_refused_before_anything_runs(sandbox, adb_key, tmp_path):
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "df").write_text("#!/bin/sh\n# stub df: a nearly full /data (toybox df -k columns)\n"
                              "echo 'Filesystem     1K-blocks    Used Available Use% Mounted on'\n"
                              "echo '/dev/block/dm-46 1000000  999000      1000 100% /data'\n")
    (stubs / "df").chmod(0o755)
    sweep = write_gen_sweep(tmp_path / "cfg", size="512x512")
    with fake_phone(sandbox, adb_key, tmp_path, [str(stubs)]) as phone, pytest.raises(ConfigError) as err:
        phone.model(sweep).generate(PROMPTS, SEEDS)
    line = str(err.value)
    assert line.startswith(f"{sweep}: [device] workdir {phone.workdir}: 0 MiB free on 127.0.0.1:") and \
        "a batch of 6 512x512 images needs about 4 MiB" in line and "--batch-size" in line, line
    assert not phone.generated() and not list(Path(phone.workdir, "gen").glob("*/*/*/prompts-a1.jsonl"))
