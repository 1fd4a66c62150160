"""Sweep files: TOML and YAML, one-line errors naming the field, stable job ids, interleaved order."""

from __future__ import annotations

import collections

import pytest

from harness.device.errors import ConfigError
from harness.device.sweep import expand, load_sweep
from tests.device.conftest import FAKE_BENCH, write_sweep


def test_toml_expands_interleaved_rounds_with_stable_ids(tmp_path):
    path = write_sweep(tmp_path, steps="[1, 2, 4]", resolutions='["64x64", [32, 48]]', repeats=3)
    sweep = load_sweep(path)
    jobs = expand(sweep, "serial-A")
    assert len(jobs) == 3 * 2 * 3 and [j.order_idx for j in jobs] == list(range(18))
    rounds = [jobs[i:i + 6] for i in range(0, 18, 6)]
    for r, block in enumerate(rounds):  # every configuration exactly once per round
        assert {j.repeat_idx for j in block} == {r}
        assert collections.Counter((j.steps, j.height, j.width) for j in block) == collections.Counter(
            {(s, h, w): 1 for s in (1, 2, 4) for h, w in ((64, 64), (32, 48))})
    orders = [[(j.steps, j.height) for j in block] for block in rounds]
    assert len({tuple(o) for o in orders}) > 1  # seeded shuffle differs between rounds
    again = expand(load_sweep(path), "serial-A")
    assert [j.job_id for j in again] == [j.job_id for j in jobs]  # stable across reloads
    assert len({j.job_id for j in jobs}) == 18
    assert {j.job_id for j in expand(sweep, "serial-B")}.isdisjoint({j.job_id for j in jobs})
    assert jobs[0].command(sweep).split()[1] == "bench"  # file placeholder = its name in the run folder


def test_job_id_changes_when_an_artifact_changes(tmp_path):
    bench = tmp_path / "bench.py"
    bench.write_bytes(FAKE_BENCH.read_bytes())
    path = write_sweep(tmp_path / "a")
    path.write_text(path.read_text().replace(str(FAKE_BENCH), str(bench)))
    ids1 = [j.job_id for j in expand(load_sweep(path), "s")]
    bench.write_bytes(FAKE_BENCH.read_bytes() + b"\n# changed\n")
    ids2 = [j.job_id for j in expand(load_sweep(path), "s")]
    assert set(ids1).isdisjoint(ids2)


def test_yaml_equivalent(tmp_path):
    yml = tmp_path / "s.yaml"
    yml.write_text(f"""
name: y
steps: 4
resolutions: [1024x1024]
order: sequential
repeats: 2
variants:
  - name: w8a16-opencl
    runner: mnn
    command: ./diffusion_demo {{model}} 1 1 3 {{iters}} {{seed}} out.jpg "a cat"
    files: {{diffusion_demo: {FAKE_BENCH}, model: {FAKE_BENCH}}}
""")
    sweep = load_sweep(yml)
    jobs = expand(sweep, "x")
    assert [(j.steps, j.height, j.repeat_idx) for j in jobs] == [(4, 1024, 0), (4, 1024, 1)]
    assert jobs[0].command(sweep) == './diffusion_demo model 1 1 3 1 42 out.jpg "a cat"'


@pytest.mark.parametrize(("edit", "message"), [
    (("repeats = 1", "repeats = 1\nrepeat_count = 2"),
     "top level: unknown key 'repeat_count'; did you mean 'repeats'?"),
    (("repeats = 1", "repeats = 0"), "repeats: 0 must be an integer in [1, 10000]"),
    (("steps = [1, 2]", "steps = [1, -2]"), "steps: -2 must be an integer in [1, 1000]"),
    (('resolutions = ["64x64"]', 'resolutions = ["1000x7"]'), "1000x7 is impossible"),
    (('resolutions = ["64x64"]', 'resolutions = ["big"]'), "'big' is not HxW"),
    (("warmup_iters = 1", "warmup_iters = 2"), "warmup_iters: 2 leaves no measured iteration"),
    (('runner = "jsonl"', 'runner = "mnnn"'), "variants[0].runner: unknown runner 'mnnn'"),
    (("--stage-ms 2", "--stage-ms {stage_ms}"), "bad placeholder 'stage_ms'"),
    (("[cooldown]", "[cooldown]\nmax_temp = 3"), "cooldown: unknown key 'max_temp'"),
    (("max_s = 1", "max_s = -1"), "cooldown.max_s: -1 must be a number >= 0"),
    (('backend = "cpu"', 'backend = "cpu"\nbackends = 1'), "variants[0]: unknown key 'backends'"),
])
def test_bad_sweep_files_name_the_field(tmp_path, edit, message):
    path = write_sweep(tmp_path)
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_artifact_and_bad_files(tmp_path):
    path = write_sweep(tmp_path)
    path.write_text(path.read_text().replace(str(FAKE_BENCH), "no/such/bench.bin"))
    with pytest.raises(ConfigError, match=r"variants\[0\].files.bench: artifact .*no/such/bench.bin not found"):
        load_sweep(path)
    with pytest.raises(ConfigError, match="sweep file not found"):
        load_sweep(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_sweep(bad)
    with pytest.raises(ConfigError, match="unknown sweep file type"):
        load_sweep(FAKE_BENCH)
