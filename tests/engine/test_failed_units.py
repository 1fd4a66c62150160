"""A unit the model could not make is recorded ``failed``, scored as a failure (never silently missing), and
tried again by the next run; the images of its batch that were made are kept as they were."""

from __future__ import annotations

import json
from typing import ClassVar

from PIL import Image

from harness.api.model import FailedImage, ImageModel
from harness.benchmarks.geneval.benchmark import GenEval
from harness.engine.lifecycle import evaluate


class Flaky(ImageModel):
    """Solid images; fails the odd seeds of the prompts whose text contains ``fail_on`` (a run option, not part of
    the hash), so a batch holds one image made and one not."""

    name = "flaky"
    capabilities = frozenset({"generate"})
    defaults: ClassVar[dict[str, str]] = {"fail_on": ""}
    unhashed_options = frozenset({"fail_on"})

    def generate(self, prompts, seeds, **sampler):
        out = []
        for prompt, seed in zip(prompts, seeds, strict=True):
            if self.options["fail_on"] and self.options["fail_on"] in prompt and seed % 2:
                out.append(FailedImage(f"binary crashed on {prompt!r}", partial="/phone/out/partial.png"))
            else:
                out.append(Image.new("RGB", (64, 64), (seed % 255, 90, 160)))
        return out


def records(folder):
    return [json.loads(line) for p in sorted((folder / "records").glob("generate-*.jsonl"))
            for line in p.read_text().splitlines()]


def test_failed_unit_is_counted_then_retried(tmp_path):
    bench = GenEval(prompts="demo", detector="tiny", clip="tiny", limit=1, images_per_prompt=2)
    out, store = tmp_path / "run", tmp_path / "h.db"
    first = evaluate(bench, Flaky(fail_on="dog"), out=out, store=store)
    assert first.summary["generation_failed"] == 1 and first.summary["images"] == 12
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    failed = [r for r in results if r["reason"].startswith("generation failed: binary crashed")]
    assert len(failed) == 1 and not failed[0]["correct"]
    recs = records(out)
    bad = [r for r in recs if r.get("status") == "failed"]
    assert len(bad) == 1 and bad[0]["partial"] == "/phone/out/partial.png"
    assert not (out / bad[0]["image"]).exists()
    kept = {r["image"]: (out / r["image"]).stat().st_mtime_ns for r in recs if r.get("status") != "failed"}

    second = evaluate(GenEval(prompts="demo", detector="tiny", clip="tiny", limit=1, images_per_prompt=2),
                      Flaky(), out=out, store=store)
    assert "generation_failed" not in second.summary and second.summary["images"] == 12
    assert second.generated == 1  # only the failed unit was made again ...
    assert {img: (out / img).stat().st_mtime_ns for img in kept} == kept  # ... its batch-mate left as it was
    from harness.core.fsio import RecordLog

    latest = RecordLog(out / "records", "generate").read()  # the last written record of each unit
    assert all(r.get("status") != "failed" for r in latest.values()) and len(latest) == 12


class FlakyEdit(ImageModel):
    """Returns the source, except a failure for instructions containing ``fail_on``."""

    name = "flaky-edit"
    capabilities = frozenset({"edit"})
    defaults: ClassVar[dict[str, str]] = {"fail_on": ""}
    unhashed_options = frozenset({"fail_on"})

    def edit(self, images, instructions, seeds, **sampler):
        return [FailedImage("out of memory") if self.options["fail_on"] and self.options["fail_on"] in text
                else image.copy() for image, text in zip(images, instructions, strict=True)]


def test_a_failed_edit_is_judge_failed_without_asking_the_judge(tmp_path, peer, api_key):
    from harness.benchmarks.imgedit.benchmark import ImgEdit

    with peer.serve() as server:
        config = {"cases": "demo", "types": "add", "judge_base_url": server.url, "judge_model": "judge-small"}
        demo = ImgEdit(config).case_set()
        target = next(c for c in demo.cases if c.edit_type == "add")
        outcome = evaluate(ImgEdit(config), FlakyEdit(fail_on=target.prompt), out=tmp_path / "e",
                           store=tmp_path / "h.db")
        asked = server.state.requests["/v1/chat/completions"]
    failures = {f["case"]: f for f in outcome.summary["failures"]}
    assert failures[target.key]["status"] == "judge_failed"
    assert failures[target.key]["reason"] == "generation failed: out of memory"
    assert asked == outcome.summary["strict"]["cases"] - 1  # the judge never saw the failed case


def test_a_failed_gedit_edit_is_judge_failed_without_asking_the_judge(tmp_path, peer, api_key):
    from harness.benchmarks.gedit.benchmark import GEdit

    with peer.serve() as server:
        config = {"cases": "demo", "judge_base_url": server.url}
        target = next(c for c in GEdit(config).case_set().cases if c.language == "en")
        outcome = evaluate(GEdit(config), FlakyEdit(fail_on=target.instruction), out=tmp_path / "g",
                           store=tmp_path / "h.db")
        asked = server.state.requests["/v1/chat/completions"]
    strict = outcome.summary["strict"]["en"]
    failures = {f["case"]: f for f in outcome.summary["failures"]}
    assert failures[target.id]["status"] == "judge_failed"
    assert failures[target.id]["reason"] == "generation failed: out of memory"
    assert (strict["scored"], strict["judge_failed"]) == (21, 1)
    assert asked == 2 * 21  # SC and PQ for every case but the failed one


def test_a_failed_dpg_image_scores_zero_with_its_reason(tmp_path):
    from harness.benchmarks.dpg.benchmark import DPG

    bench = DPG(prompts="demo", vqa="tiny", limit=2)
    target = bench.selected()[0]
    outcome = evaluate(bench, Flaky(fail_on=target.text[:30]), out=tmp_path / "d", store=tmp_path / "h.db")
    results = {r["item_id"]: r for r in map(json.loads, (tmp_path / "d" / "results.jsonl").read_text().splitlines())}
    assert "generation_failed: binary crashed" in (results[target.id].get("failure") or "")
    assert results[target.id]["score"] == 0.0 and results[target.id]["parity_score"] is None  # parity drops it
    assert outcome.summary["generation_failed"] == 2  # the two odd seeds of its four images
    assert "2 image(s) the model could not make" in bench.format_summary(outcome.summary)
    assert not (tmp_path / "d" / "tiles" / f"{target.id}.png").exists()  # no tile the official scorer could read
    assert all((tmp_path / "d" / "tiles" / f"{p.id}.png").is_file() for p in bench.selected()[1:])
    again = evaluate(DPG(prompts="demo", vqa="tiny", limit=2), Flaky(), out=tmp_path / "d", store=tmp_path / "h.db")
    assert "generation_failed" not in again.summary and again.generated == 2
    assert (tmp_path / "d" / "tiles" / f"{target.id}.png").is_file()
