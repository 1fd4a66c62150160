"""Bad input: every `harness` sub-command refuses malformed input with ONE stderr line and exit status 2.

The table walks every sub-command (and every registered benchmark under `run`/`score`) with unknown flags,
bad values, missing files, files of garbage or not UTF-8, and JSON of the wrong type. Each row names a
substring the line must contain (the file, flag or field), so a generic one-liner does not pass. Rows are
ordered so that no case loads a model or generates an image: validation happens before any work. Every
row runs as a real `python -m harness` process (no traceback, no warning, nothing else on stderr, nothing
on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cli import build_parser, main
from harness.core.images import set_max_pixels

Setup = Callable[[Path], None]


# -- files ------------------------------------------------------------------------------------------------
def png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit grey PNG of all-black pixels: a few kB on disk for any size (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = (b"\x00" + bytes((width + 7) // 8)) * height
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    return path


LATIN1 = '{"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a caf\xe9 dog"}\n'


def write(path: str, data: str | bytes) -> Setup:
    def setup(root: Path) -> None:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data.encode("latin-1") if isinstance(data, str) else data)
    return setup


def non_utf8(path: str) -> Setup:
    """Latin-1 text (a café): what an editor on another system saves."""
    return write(path, LATIN1)


def garbage(path: str) -> Setup:
    return write(path, random.Random(0).randbytes(4096))


def both(*setups: Setup) -> Setup:
    def setup(root: Path) -> None:
        for s in setups:
            s(root)
    return setup


META = json.dumps({"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog"})


def geneval_images(sample: tuple[int, int] = (8, 8), meta: str | None = META) -> Setup:
    def setup(root: Path) -> None:
        png(root / "imgs" / "00000" / "samples" / "0000.png", *sample)
        if meta is not None:
            write("imgs/00000/metadata.jsonl", meta)(root)
    return setup


def summary(text: str, folder: str = "r") -> Setup:
    return write(f"{folder}/summary.json", text)


class Payload:
    """A pickle that runs code when loaded (it would create the marker file): what a safe loader refuses."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def evil_checkpoint(root: Path) -> None:
    import torch

    torch.save({"visual.proj": torch.zeros(2), "payload": Payload(str(root / "pwned"))}, root / "evil.pt")


RUN_G = ["run", "geneval", "--model", "tiny", "--prompts", "demo", "--no-progress"]
PHONE = ["run", "geneval", "--model", "phone", "--prompts", "demo", "--no-progress", "--model-args"]
BATCH_GEN = "./gen --prompts {prompts} --outdir {outdir}"


def sweep_toml(generate: str | None = BATCH_GEN, variant: str = "v") -> Setup:
    """A sweep file (with its artifact) whose variant has this ``generate`` template (None: no template)."""
    line = "" if generate is None else f"generate = {json.dumps(generate)}\n"
    return both(write("gen", "#!/bin/sh\n"),
                write("s.toml", f'name = "s"\nsteps = [4]\nresolutions = ["64x64"]\n[[variants]]\nname = "{variant}"\n'
                                f'runner = "jsonl"\ncommand = "./gen"\n{line}files = {{ gen = "gen" }}\n'))
SCORE_G = ["score", "geneval", "--images", "imgs", "--no-progress"]
RUN_E = ["run", "imgedit", "--model", "tiny", "--cases", "demo", "--no-score", "--no-progress"]
SCORE_E = ["score", "imgedit", "--images", "imgs", "--cases", "demo", "--no-progress"]
RUN_D = ["run", "dpg", "--model", "tiny", "--prompts", "demo", "--vqa", "tiny", "--no-progress"]
SCORE_D = ["score", "dpg", "--images", "imgs", "--prompts", "demo", "--vqa", "tiny", "--no-progress"]
RUBRICS = json.dumps({"add": "Rate the edit <edit_prompt>.\nA: A number from 1 to 5."})
NIGHTLY = '[model]\nname = "tiny"\n[[benchmark]]\nname = "geneval"\n'


def case(argv: list[str], expect: str, setup: Setup | None = None, id: str = "") -> object:
    return pytest.param(argv, expect, setup, id=id)


RUN_GE = ["run", "gedit", "--model", "tiny", "--cases", "demo", "--no-score", "--no-progress"]
SCORE_GE = ["score", "gedit", "--images", "imgs", "--cases", "demo", "--no-progress"]
CASES = [
    # -- harness itself, list --------------------------------------------------------------------------
    case(["nope"], "invalid choice: 'nope'", id="command-unknown"),
    case(["--bogus"], "--bogus", id="flag-unknown"),
    case(["list", "gadgets"], "invalid choice: 'gadgets'", id="list-group-unknown"),
    case(["list", "models", "--bogus"], "--bogus", id="list-flag-unknown"),
    # -- run: argparse-level ---------------------------------------------------------------------------
    case(["run"], "name a benchmark", id="run-no-benchmark"),
    case(["run", "nope", "--model", "tiny"], "nope", id="run-benchmark-unknown"),
    case(["run", "geneval"], "--model", id="run-geneval-model-missing"),
    case([*RUN_GE, "--language", "de"], "--language", id="run-gedit-language-unknown"),
    case([*RUN_GE, "--judge-attempts", "0"], "--judge-attempts", id="run-gedit-judge-attempts-0"),
    case([*SCORE_GE], "imgs", id="score-gedit-images-folder-missing"),
    case([*SCORE_GE, "--judge-profile", "claude"], "--judge-profile", id="score-gedit-judge-profile-unknown"),
    case(["run", "device", "--model", "tiny"], "not a runnable benchmark", id="run-device-reports-only"),
    case(["score", "device", "--images", "x"], "not a runnable benchmark", id="score-device-reports-only"),
    case([*RUN_G, "--bogus"], "--bogus", id="run-geneval-flag-unknown"),
    case([*RUN_G, "--limit", "0"], "--limit", id="run-geneval-limit-0"),
    case([*RUN_G, "--limit", "-1"], "--limit", id="run-geneval-limit-negative"),
    case([*RUN_G, "--limit", "abc"], "--limit", id="run-geneval-limit-abc"),
    case([*RUN_G, "--batch-size", "0"], "--batch-size", id="run-geneval-batch-size-0"),
    case([*RUN_G, "--images-per-prompt", "0"], "--images-per-prompt", id="run-geneval-images-per-prompt-0"),
    case([*RUN_G, "--threads", "-1"], "--threads", id="run-geneval-threads-negative"),
    case([*RUN_G, "--score-batch-size", "0"], "--score-batch-size", id="run-geneval-score-batch-size-0"),
    case([*RUN_G, "--max-pixels", "0"], "--max-pixels", id="run-geneval-max-pixels-0"),
    case([*RUN_G, "--seed", "x"], "--seed", id="run-geneval-seed-abc"),
    # -- run: typed option values, before any work ---------------------------------------------------------
    case([*RUN_G, "--model", "nope"], "nope", id="run-geneval-model-unknown"),
    case([*RUN_G, "--model-args", "steps=abc"], "steps='abc'", id="run-geneval-model-args-steps-abc"),
    case([*RUN_G, "--model-args", "steps=0"], "steps=0", id="run-geneval-model-args-steps-0"),
    case([*RUN_G, "--model-args", "resolution=0"], "resolution=0", id="run-geneval-model-args-resolution-0"),
    case([*RUN_G, "--model-args", "resolution=0x64"], "resolution='0x64'", id="run-geneval-model-args-resolution-0x64"),
    case([*RUN_G, "--model-args", "mobile=yes"], "mobile='yes'", id="run-geneval-model-args-bool-yes"),
    case([*RUN_G, "--model-args", "mobile=1"], "mobile=1", id="run-geneval-model-args-bool-1"),
    case([*RUN_G, "--model-args", "guidance=nan"], "guidance=nan", id="run-geneval-model-args-nan"),
    case([*RUN_G, "--model-args", "steps"], "--model-args", id="run-geneval-model-args-not-key-value"),
    case([*RUN_G, "--model-args", "stepz=2"], "did you mean 'steps'", id="run-geneval-model-args-unknown"),
    case([*RUN_G, "--options", "threshold=abc"], "threshold='abc'", id="run-geneval-options-threshold-abc"),
    case([*RUN_G, "--options", "max_objects=1.5"], "max_objects=1.5", id="run-geneval-options-max-objects"),
    case([*RUN_G, "--options", "max_overlap=abc"], "max_overlap='abc'", id="run-geneval-options-max-overlap"),
    case([*RUN_G, "--options", "thresh=0.3"], "thresh", id="run-geneval-options-unknown"),
    case([*RUN_G, "--options", "threshold"], "--options: 'threshold' is not key=value",
         id="run-geneval-options-not-key-value"),
    case([*RUN_G, "--detector", "nope"], "nope", id="run-geneval-detector-unknown"),
    case([*RUN_G, "--detector-args", "scale=abc"], "scale='abc'", id="run-geneval-detector-args-scale"),
    case([*RUN_G, "--detector", "mask2former-official", "--detector-args", "batch=0"], "batch=0",
         id="run-geneval-detector-args-batch-0"),
    case([*RUN_G, "--detector", "tiny", "--detector-args", "nope=1"], "nope", id="run-geneval-detector-args-unknown"),
    case([*RUN_G, "--clip", "ViT-B-32:missing.pt"], "missing.pt", id="run-geneval-clip-file-missing"),
    case([*RUN_G, "--shard", "abc"], "--shard", id="run-geneval-shard-abc"),
    case([*RUN_G, "--store", "store.db"], "store.db", garbage("store.db"), id="run-geneval-store-not-sqlite"),
    # -- run: input files --------------------------------------------------------------------------------
    case([*RUN_G, "--prompts", "missing.jsonl"], "missing.jsonl", id="run-geneval-prompts-missing"),
    case([*RUN_G, "--prompts", "p.jsonl"], "p.jsonl", non_utf8("p.jsonl"), id="run-geneval-prompts-not-utf8"),
    case([*RUN_G, "--prompts", "p.jsonl"], "p.jsonl", garbage("p.jsonl"), id="run-geneval-prompts-garbage"),
    case([*RUN_G, "--prompts", "p.jsonl"], "p.jsonl", write("p.jsonl", "[]\n"), id="run-geneval-prompts-array"),
    case([*RUN_G, "--tags", "nope"], "--tags", id="run-geneval-tags-unknown"),
    # -- run imgedit -------------------------------------------------------------------------------------
    case([*RUN_E, "--batch-size", "0"], "--batch-size", id="run-imgedit-batch-size-0"),
    case([*RUN_E, "--limit", "0"], "--limit", id="run-imgedit-limit-0"),
    case([*RUN_E, "--judge-concurrency", "0"], "--judge-concurrency", id="run-imgedit-judge-concurrency-0"),
    case([*RUN_E, "--judge-timeout", "-1"], "--judge-timeout", id="run-imgedit-judge-timeout-negative"),
    case([*RUN_E, "--model-args", "seed=-1"], "seed=-1", id="run-imgedit-model-args-seed-negative"),
    case([*RUN_E, "--cases", "c.json", "--rubrics", "r.json"], "r.json", non_utf8("r.json"),
         id="run-imgedit-rubrics-not-utf8"),
    case([*RUN_E, "--cases", "c.json", "--rubrics", "r.json"], "c.json",
         both(write("r.json", RUBRICS), non_utf8("c.json")), id="run-imgedit-cases-not-utf8"),
    case([*RUN_E, "--cases", "c.json", "--rubrics", "r.json"], "c.json",
         both(write("r.json", RUBRICS), write("c.json", "[]")), id="run-imgedit-cases-array"),
    # -- score geneval -------------------------------------------------------------------------------------
    case(["score", "geneval"], "--images", id="score-geneval-images-flag-missing"),
    case([*SCORE_G, "--bogus"], "--bogus", id="score-geneval-flag-unknown"),
    case([*SCORE_G], "imgs", id="score-geneval-images-folder-missing"),
    case([*SCORE_G], "metadata.jsonl", geneval_images(meta=None), id="score-geneval-metadata-missing"),
    case([*SCORE_G], "metadata.jsonl", both(geneval_images(meta=None), non_utf8("imgs/00000/metadata.jsonl")),
         id="score-geneval-metadata-not-utf8"),
    case([*SCORE_G], "metadata.jsonl", both(geneval_images(meta=None), garbage("imgs/00000/metadata.jsonl")),
         id="score-geneval-metadata-garbage"),
    case(["score", "geneval", "--images", "run/images"], "metadata.jsonl",
         both(write("run/run.json", json.dumps({"run_id": "geneval-x", "config": {"prompts": {"indices": [0]}}})),
              non_utf8("run/images/00000/metadata.jsonl")), id="score-geneval-run-metadata-not-utf8"),
    case(["score", "geneval", "--images", "run/images"], "run.json",
         both(write("run/run.json", "[]"), geneval_images()), id="score-geneval-run-json-array"),
    case([*SCORE_G], "0000.png", geneval_images((12000, 12000)), id="score-geneval-sample-decompression-bomb"),
    case([*SCORE_G, "--max-pixels", "4096"], "0000.png", geneval_images((65, 64)),
         id="score-geneval-sample-over-max-pixels"),
    case([*SCORE_G, "--options", "threshold=abc"], "threshold='abc'", geneval_images(),
         id="score-geneval-options-threshold-abc"),
    case([*SCORE_G, "--detector-args", "scale=0x800"], "scale='0x800'", geneval_images(),
         id="score-geneval-detector-args-scale"),
    case([*SCORE_G, "--clip", "ViT-B-32:garbage.pt"], "garbage.pt", both(geneval_images(), garbage("garbage.pt")),
         id="score-geneval-clip-garbage"),
    case([*SCORE_G, "--clip", "ViT-B-32:evil.pt"], "evil.pt", both(geneval_images(), evil_checkpoint),
         id="score-geneval-clip-code-in-pickle"),
    case([*SCORE_G, "--store", "store.db"], "store.db", both(geneval_images(), garbage("store.db")),
         id="score-geneval-store-not-sqlite"),
    # -- dpg ---------------------------------------------------------------------------------------------
    case([*RUN_D, "--images-per-prompt", "5"], "--images-per-prompt", id="run-dpg-images-per-prompt-5"),
    case([*RUN_D, "--vqa", "nope"], "vqa-nope", id="run-dpg-vqa-unknown"),
    case([*RUN_D, "--prompts", "missing"], "missing", id="run-dpg-prompts-missing"),
    case(["score", "dpg"], "--images", id="score-dpg-images-flag-missing"),
    case([*SCORE_D, "--resolution", "0"], "--resolution", id="score-dpg-resolution-0"),
    case(SCORE_D, "--resolution", lambda root: (root / "imgs").mkdir(), id="score-dpg-resolution-missing"),
    # -- score imgedit -------------------------------------------------------------------------------------
    case(["score", "imgedit"], "--images", id="score-imgedit-images-flag-missing"),
    case([*SCORE_E, "--judge-retries", "-1"], "--judge-retries", id="score-imgedit-judge-retries-negative"),
    case([*SCORE_E, "--judge-batch-size", "0"], "--judge-batch-size", id="score-imgedit-judge-batch-size-0"),
    case([*SCORE_E], "imgs", id="score-imgedit-images-folder-missing"),
    case([*SCORE_E, "--judge-price", "abc"], "--judge-price", geneval_images(), id="score-imgedit-judge-price"),
    case([*SCORE_E, "--clip-metrics", "ViT-B-32:evil.pt"], "evil.pt", evil_checkpoint,
         id="score-imgedit-clip-metrics-code-in-pickle"),
    case([*SCORE_E, "--missing", "count"], "1.png", lambda root: png(root / "imgs" / "1.png", 12000, 12000),
         id="score-imgedit-image-decompression-bomb"),
    # -- report, compare ------------------------------------------------------------------------------------
    case(["report", "r"], "--out", id="report-out-missing"),
    case(["report", "r", "--out", "rep", "--bogus"], "--bogus", id="report-flag-unknown"),
    case(["report", "r", "--out", "rep", "--grid-limit", "-1"], "--grid-limit", id="report-grid-limit-negative"),
    case(["report", "r", "--out", "rep", "--max-pixels", "abc"], "--max-pixels", id="report-max-pixels-abc"),
    case(["report", "r", "--out", "rep"], "summary.json", summary("[]"), id="report-summary-array"),
    case(["report", "r", "--out", "rep"], "summary.json", summary('"x"'), id="report-summary-string"),
    case(["report", "r", "--out", "rep"], "summary.json", summary("{"), id="report-summary-garbage"),
    case(["report", "r", "--out", "rep"], "summary.json", non_utf8("r/summary.json"), id="report-summary-not-utf8"),
    case(["report", "r", "--out", "rep"], "results.jsonl",
         both(summary('{"benchmark": "geneval"}'), write("r/results.jsonl", "[1]\n")), id="report-results-array"),
    case(["report", "nope", "--out", "rep", "--store", "store.db"], "store.db", garbage("store.db"),
         id="report-store-not-sqlite"),
    case(["report", "nope", "--out", "rep", "--store", "f/x.db"], "f/x.db", write("f", "a file, not a folder"),
         id="report-store-folder-is-a-file"),
    case(["compare", "a"], "new", id="compare-new-missing"),
    case(["compare", "a", "b", "--threshold", "abc"], "--threshold", id="compare-threshold-abc"),
    case(["compare", "a", "b", "--threshold", "-0.1"], "--threshold", id="compare-threshold-negative"),
    case(["compare", "a", "b"], "summary.json", both(summary("[]", "a"), summary("[]", "b")),
         id="compare-summary-array"),
    # -- nightly --------------------------------------------------------------------------------------------
    case(["nightly"], "config", id="nightly-config-missing"),
    case(["nightly", "n.toml"], "n.toml", id="nightly-config-file-missing"),
    case(["nightly", "n.toml"], "n.toml", non_utf8("n.toml"), id="nightly-config-not-utf8"),
    case(["nightly", "n.toml"], "n.toml", garbage("n.toml"), id="nightly-config-garbage"),
    case(["nightly", "n.toml"], "threshold", write("n.toml", 'threshold = "abc"\n' + NIGHTLY),
         id="nightly-threshold-abc"),
    case(["nightly", "n.toml"], "args", write("n.toml", NIGHTLY + "args = [1]\n"), id="nightly-args-not-strings"),
    # -- merge ----------------------------------------------------------------------------------------------
    case(["merge"], "out", id="merge-folder-missing"),
    case(["merge", "r"], "run.json", id="merge-nothing-to-merge"),
    case(["merge", "r"], "run.json", write("r/run.json", "garbage"), id="merge-run-json-garbage"),
    case(["merge", "r"], "run.json", non_utf8("r/run.json"), id="merge-run-json-not-utf8"),
    case(["merge", "r"], "scoring-x.json", write("r/scoring-x.json", "[]"), id="merge-scoring-array"),
    case(["merge", "r", "--store", "store.db"], "store.db",
         both(write("r/run.json", '{"benchmark": "geneval"}'), garbage("store.db")), id="merge-store-not-sqlite"),
    # -- the phone model (a sweep variant's generate template) ---------------------------------------------
    case(PHONE[:-1], "--model-args sweep=FILE", id="run-phone-sweep-missing"),
    case([*PHONE, "sweep=s.toml"], "s.toml: sweep file not found", id="run-phone-sweep-file-missing"),
    case([*PHONE, "sweep=s.toml"], "s.toml: variants[0] (v) has no generate template", sweep_toml(None),
         id="run-phone-no-generate-template"),
    case([*PHONE, "sweep=s.toml"], "s.toml: variants[0].generate has a bad placeholder 'nope'",
         sweep_toml(BATCH_GEN + " {nope}"), id="run-phone-placeholder-unknown"),
    case([*PHONE, "sweep=s.toml"], "s.toml: variants[0].generate: a batch template (it uses {prompts}) needs {outdir}",
         sweep_toml("./gen {prompts}"), id="run-phone-batch-template-no-outdir"),
    case([*PHONE, "sweep=s.toml"], "s.toml: variants[0].generate: a per-image template (no {prompts}) needs {output}",
         sweep_toml("./gen -p {prompt}"), id="run-phone-per-image-template-no-output"),
    case([*PHONE, "sweep=s.toml"], "s.toml: variants[0].generate has a bad placeholder 'outdir'",
         sweep_toml("./gen -p {prompt} -o {output} --dir {outdir}"), id="run-phone-per-image-batch-placeholder"),
    case([*PHONE, "sweep=s.toml"], "placeholder {prompt} is inside quotes",
         sweep_toml("./gen -p '{prompt}' -o {output}"), id="run-phone-placeholder-quoted"),
    case([*PHONE, "sweep=s.toml,variant=w8a16"], "variant=w8a16: no such variant in s.toml", sweep_toml(),
         id="run-phone-variant-unknown"),
    case([*PHONE, "sweep=s.toml,backend=usb"], "backend='usb'", sweep_toml(), id="run-phone-backend-unknown"),
    case([*PHONE, "sweep=s.toml,port=0"], "port=0", sweep_toml(), id="run-phone-port-0"),
    case([*PHONE, "sweep=s.toml,steps=0"], "steps=0", sweep_toml(), id="run-phone-steps-0"),
    # -- device ---------------------------------------------------------------------------------------------
    case(["device", "nope"], "invalid choice: 'nope'", id="device-command-unknown"),
    case(["device", "sweep"], "file", id="device-sweep-file-missing-arg"),
    case(["device", "sweep", "s.toml"], "s.toml", id="device-sweep-file-missing"),
    case(["device", "sweep", "s.toml", "--max-jobs", "0"], "--max-jobs", id="device-sweep-max-jobs-0"),
    case(["device", "sweep", "s.toml", "--backend", "local", "--bogus"], "--bogus", id="device-sweep-flag-unknown"),
    case(["device", "sweep", "s.toml", "--backend", "local"], "s.toml", non_utf8("s.toml"),
         id="device-sweep-toml-not-utf8"),
    case(["device", "sweep", "s.yaml", "--backend", "local"], "s.yaml", non_utf8("s.yaml"),
         id="device-sweep-yaml-not-utf8"),
    case(["device", "sweep", "s.toml", "--backend", "local"], "s.toml", garbage("s.toml"),
         id="device-sweep-garbage"),
    case(["device", "info", "--port", "abc"], "--port", id="device-info-port-abc"),
    case(["device", "info", "--port", "70000"], "--port", id="device-info-port-out-of-range"),
    case(["device", "info", "--timeout", "0"], "--timeout", id="device-info-timeout-0"),
    case(["device", "info", "--host", "phone:abc"], "--host", id="device-info-host-port-abc"),
    case(["device", "info"], "no device given", id="device-info-no-device"),
    case(["device", "results"], "out", id="device-results-folder-missing-arg"),
    case(["device", "results", "nope"], "nope", id="device-results-folder-missing"),
    case(["device", "profile"], "--model", id="device-profile-model-missing"),
    case(["device", "profile", "--model", "nope"], "nope", id="device-profile-model-unknown"),
    case(["device", "profile", "--model", "tiny", "--steps", "0"], "--steps", id="device-profile-steps-0"),
    case(["device", "profile", "--model", "tiny", "--warmup", "-1"], "--warmup", id="device-profile-warmup-negative"),
    case(["device", "profile", "--model", "tiny", "--threads", "-1"], "--threads", id="device-profile-threads"),
    case(["device", "profile", "--model", "tiny", "--model-args", "steps=abc"], "steps='abc'",
         id="device-profile-model-args-steps-abc"),
    case(["device", "profile", "--model", "tiny", "--model-args", "mobile=maybe"], "mobile='maybe'",
         id="device-profile-model-args-bool"),
]


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, no device or store from the environment, a key for the judge (never used)."""
    monkeypatch.chdir(tmp_path)
    for name in ("ADB_HOST", "ANDROID_SERIAL", "HARNESS_STORE", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # a closed port: never reached anyway
    yield tmp_path
    set_max_pixels(None)


def run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's exit
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_line(code: object, err: str, expect: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, f"exit status {code}, stderr: {err!r}"
    assert len(lines) == 1 and lines[0].strip(), f"want exactly one stderr line, got: {err!r}"
    assert "Traceback" not in err
    assert expect in lines[0], f"{expect!r} not named in: {lines[0]!r}"


@pytest.mark.parametrize(("argv", "expect", "setup"), CASES)
def test_bad_input_is_one_line_exit_2(argv: list[str], expect: str, setup: Setup | None, sandbox: Path) -> None:
    """A real `python -m harness` process: exit 2, one stderr line naming the culprit, nothing on stdout."""
    if setup:
        setup(sandbox)
    out = subprocess.run([sys.executable, "-m", "harness", *argv], cwd=sandbox, capture_output=True, text=True,
                         env=dict(os.environ), timeout=120)
    assert_one_line(out.returncode, out.stderr, expect)
    assert out.stdout == ""
    assert not (sandbox / "pwned").exists(), "a checkpoint's pickle ran code"


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.add((*prefix, name))
                found |= _subcommands(sub, (*prefix, name))
    return found


def test_table_walks_every_subcommand_and_benchmark() -> None:
    """A new sub-command (or benchmark) without rows here fails this test."""
    from harness.registry import registry

    wanted = _subcommands(build_parser())
    wanted |= {(stage, bench) for stage in ("run", "score") for bench in registry("benchmarks").names()}
    covered = {tuple(p.values[0][:n]) for p in CASES for n in (1, 2)}
    assert wanted - covered == set()


# -- nothing lost ------------------------------------------------------------------------------------------
def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize(("extra", "expect"), [
    (["--options", "threshold=abc"], "--options threshold='abc'"),
    (["--detector-args", "scale=abc"], "--detector-args scale='abc'"),
    (["--model-args", "steps=abc"], "--model-args steps='abc'"),
    (["--clip", "ViT-B-32:evil.pt"], "evil.pt"),
])
def test_bad_option_on_an_existing_run_touches_nothing(extra: list[str], expect: str, sandbox: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A run that already has images: a bad scoring or model option is refused before the folder or the
    store is opened, so nothing in it changes and no store is created."""
    evil_checkpoint(sandbox)
    out = sandbox / "run"
    write("run/run.json", json.dumps({"run_id": "geneval-x", "config": {"benchmark": "geneval"}}))(sandbox)
    png(out / "images" / "00000" / "samples" / "0000.png", 64, 64)
    write("run/images/00000/metadata.jsonl", META)(sandbox)
    write("run/records/generate-1.jsonl", '{"key": "k", "image": "images/00000/samples/0000.png"}\n')(sandbox)
    before = snapshot(out)
    code, err = run_in_process([*RUN_G, "--detector", "tiny", "--clip", "tiny", "--out", "run", *extra], capsys)
    assert_one_line(code, err, expect)
    assert snapshot(out) == before
    assert not (sandbox / "runs").exists(), "the store was opened before the options were checked"
    assert not (sandbox / "pwned").exists()


def test_store_that_is_not_sqlite_stays_byte_identical(sandbox: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage("store.db")(sandbox)
    before = (sandbox / "store.db").read_bytes()
    code, err = run_in_process(["report", "nope", "--out", "rep", "--store", "store.db"], capsys)
    assert_one_line(code, err, "store.db: not a usable SQLite results store")
    assert (sandbox / "store.db").read_bytes() == before
    assert sorted(p.name for p in sandbox.iterdir()) == ["store.db"]  # no -wal/-shm files, no report folder
