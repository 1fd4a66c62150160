"""The single validation points behind bad-input refusals: typed options, the pixel budget, safe CLIP
checkpoints, strict JSON output, Markdown cells, and GenEval's prompt selection."""

from __future__ import annotations

import json

import pytest

from harness.core.errors import HarnessError
from tests.harness.test_bad_input import Payload, png


@pytest.fixture(autouse=True)
def default_budget():
    yield
    from harness.core.images import set_max_pixels

    set_max_pixels(None)


# -- typed options ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("options", "message"), [
    ({"steps": "abc"}, "--model-args steps='abc': expected a positive integer"),
    ({"steps": 0}, "--model-args steps=0: expected a positive integer"),
    ({"steps": 2.5}, "--model-args steps=2.5"),
    ({"resolution": 0}, "--model-args resolution=0: expected a positive size"),
    ({"resolution": "64xabc"}, "resolution='64xabc'"),
    ({"mobile": "yes"}, "--model-args mobile='yes': expected true or false"),
    ({"mobile": 0}, "--model-args mobile=0: expected true or false"),
    ({"guidance": None}, "--model-args guidance=None"),  # none only where the default is none
    ({"guidance": "high"}, "guidance='high'"),
    ({"seed": -1}, "seed=-1"),
])
def test_model_option_values_are_checked(options, message):
    from harness.models.tiny import TinyDreamLite

    with pytest.raises(HarnessError, match=message.replace("(", r"\(").replace("+", r"\+")):
        TinyDreamLite(**options)


def test_valid_model_options_are_kept_exactly_as_given():
    """Checked, never converted: an int guidance stays an int, so settings hashes do not change."""
    from harness.core.options import parse_pairs
    from harness.models.diffusers_t2i import DiffusersText2Image
    from harness.models.tiny import TinyDreamLite

    given = parse_pairs("steps=3,guidance=4,resolution=96x64,mobile=true,revision=none,seed=7", "--model-args")
    model = TinyDreamLite(**given)
    assert {k: model.options[k] for k in given} == given
    assert type(model.options["guidance"]) is int
    sd = DiffusersText2Image(weights="x", steps=None, guidance=None, resolution=512)  # None defaults take None
    assert sd.options["steps"] is None and sd.options["resolution"] == 512


def test_openai_model_declares_its_own_option_types():
    from harness.models.openai_images import GPTImage1

    with pytest.raises(HarnessError, match="concurrency=0: expected a positive integer"):
        GPTImage1(concurrency=0)
    with pytest.raises(HarnessError, match="max_retries=-1: expected an integer >= 0"):
        GPTImage1(max_retries=-1)
    assert GPTImage1(timeout=30, max_retries=0).options["timeout"] == 30


def test_detector_option_values_are_checked_before_loading():
    from harness.benchmarks.geneval.detectors.hf_mask2former import HFMask2Former, TinyMask2Former
    from harness.benchmarks.geneval.detectors.official import OfficialMask2Former

    with pytest.raises(HarnessError, match="--detector-args scale='abc': expected a positive size"):
        HFMask2Former.check_options({"scale": "abc"})
    with pytest.raises(HarnessError, match="--detector-args seed='x'"):
        TinyMask2Former(seed="x")  # refused before any weights are built
    with pytest.raises(HarnessError, match="batch=0: expected auto or a positive integer"):
        OfficialMask2Former.check_options({"batch": 0})
    with pytest.raises(HarnessError, match="compile='yes': expected true or false"):
        OfficialMask2Former.check_options({"compile": "yes"})
    with pytest.raises(HarnessError, match="attention='flash'"):
        OfficialMask2Former.check_options({"attention": "flash"})
    assert OfficialMask2Former.check_options({"batch": 4, "reuse_memory": False, "scale": 800})["batch"] == 4


def test_geneval_options_are_checked_and_unknown_keys_named():
    from harness.benchmarks.geneval.score import parse_constants as parse_options

    assert parse_options("threshold=0.5,max_objects=4").threshold == 0.5
    for text, message in [("threshold=abc", "threshold='abc': expected a number from 0 to 1"),
                          ("counting_threshold=1.5", "counting_threshold=1.5"),
                          ("max_objects=0", "max_objects=0: expected a positive integer"),
                          ("position_threshold=-0.1", "position_threshold=-0.1"),
                          ("treshold=0.3", "did you mean 'threshold'")]:
        with pytest.raises(HarnessError, match=message):
            parse_options(text)


def test_geneval_limit_below_one_is_refused_in_prompt_selection():
    from harness.benchmarks.geneval.prompts import load_prompts

    prompts = load_prompts("demo")
    assert len(prompts.select(None, 1)) == 6
    for limit in (0, -1):
        with pytest.raises(HarnessError, match=f"--limit {limit}: must be >= 1"):
            prompts.select(None, limit)


# -- pixel budget -------------------------------------------------------------------------------------------
def test_geneval_sample_over_the_budget_is_refused_from_its_header(tmp_path):
    """A 20000x20000 PNG of a few kB (400 Mpixel): refused before PIL decodes a pixel."""
    from harness.benchmarks.geneval.score import load_image
    from harness.core.images import set_max_pixels

    bomb = png(tmp_path / "0000.png", 20000, 20000)
    with pytest.raises(HarnessError, match=r"0000.png: sample has 20000x20000 = 400000000 pixels, over the pixel"):
        load_image(bomb)
    small = png(tmp_path / "0001.png", 40, 30)
    assert load_image(small).size == (40, 30)
    set_max_pixels(1000)
    with pytest.raises(HarnessError, match="40x30 = 1200 pixels, over the pixel budget of 1000"):
        load_image(small)


def test_clip_metrics_refuse_an_image_over_the_budget(tmp_path):
    from harness.benchmarks.imgedit.clip_metrics import ClipMetrics

    metrics = ClipMetrics("tiny", device="cpu")
    small = png(tmp_path / "src.png", 32, 32)
    assert len(metrics([(small, small, "make it red")])) == 1
    bomb = png(tmp_path / "1.png", 20000, 20000)
    with pytest.raises(HarnessError, match="1.png: image has 20000x20000"):
        metrics([(small, bomb, "make it red")])


def test_report_shows_an_image_over_the_budget_as_a_placeholder(tmp_path):
    """The report links images for the browser to decode: one over the budget is not linked."""
    from synthetic_runs import write_synthetic_run

    from harness.reports.html import build_report
    from harness.reports.runs import load_run

    run = write_synthetic_run(tmp_path / "r", rates={"single_object": 1.0}, seed=0, images_per_prompt=2,
                              prompts={"single_object": 1})
    png(run / "images" / "00000" / "samples" / "0000.png", 20000, 20000)
    png(run / "images" / "00000" / "samples" / "0001.png", 16, 16)
    html_path, _ = build_report([load_run(str(run))], tmp_path / "rep")
    page = html_path.read_text()
    assert "too large" in page and "0000.png'" not in page
    assert "samples/0001.png'" in page


# -- CLIP checkpoints -------------------------------------------------------------------------------------
def test_clip_checkpoint_with_code_in_its_pickle_is_refused_unrun(tmp_path):
    import torch

    from harness.benchmarks.geneval.colors import ColorClassifier

    marker = tmp_path / "pwned"
    torch.save({"visual.proj": torch.zeros(2), "payload": Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(HarnessError) as info:
        ColorClassifier(f"ViT-B-32:{tmp_path / 'evil.pt'}", device="cpu")
    assert "evil.pt: the file needs code beyond tensors" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


# -- output -----------------------------------------------------------------------------------------------
def test_json_writer_never_writes_nan():
    from harness.core.jsonio import dumps

    text = dumps({"overall": float("nan"), "ci": [float("inf"), 0.5], "n": 3})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")) == {
        "overall": None, "ci": [None, 0.5], "n": 3}


def test_geneval_summary_of_nothing_is_strict_json(tmp_path):
    """An empty scoring (no samples) has no overall score: null in summary.json, never a bare NaN."""
    from harness.engine.lifecycle import finalize
    from harness.store import Store

    manifest = {"benchmark": "geneval", "run_id": "geneval-empty", "label": "GenEval-HF", "scorer": {},
                "scorer_hash": "h", "provenance": {}, "extra": {}, "images_dir": "images", "context": {},
                "stages": [["score-h", []]]}
    (tmp_path / "images").mkdir()
    (tmp_path / "scoring-h.json").write_text(json.dumps(manifest))
    with Store(tmp_path / "store.db") as store:
        finalize(tmp_path, store)
    summary = json.loads((tmp_path / "summary.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"summary.json holds {c}"))
    assert summary["overall"] is None


def test_markdown_table_cells_are_escaped(tmp_path):
    """An edit-type name from a custom rubric file stays inside its cell and never becomes HTML."""
    from harness.api.reporting import RunData
    from harness.api.reporting import md as md_cell
    from harness.reports.html import build_report

    name = "add | <script>alert(1)</script> `x`\nnext"
    run = RunData(tmp_path, {"benchmark": "imgedit", "run_id": "r|1", "strict": {
        "types": {name: {"score": 4.0, "cases": 1, "scored": 1, "parse_failed": 0, "judge_failed": 0}}}})
    _, md_path = build_report([run], tmp_path / "rep")
    md = md_path.read_text()
    assert "<script>" not in md and "`x`" not in md
    row = next(line for line in md.splitlines() if "alert" in line)
    assert row.replace("\\|", "").count("|") == 8  # 7 cells: the name's pipe is escaped
    assert md_cell(name) == "add \\| &lt;script&gt;alert(1)&lt;/script&gt; &#96;x&#96;<br>next"
    assert "## ImgEdit: r\\|1" in md
