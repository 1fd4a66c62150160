"""A benchmark plugin in under 100 lines: how close is each image's mean brightness to its prompt's target."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.api import Benchmark, Generated, Paired, Plan, Sample, ScorePlan, Scorer, Stage, WorkUnit, opt
from harness.core.options import INTEGER, NON_NEGATIVE_NUMBER, POSITIVE_INT

PROMPTS = {"dark-0": ("a black cat at night", 0.1), "dark-1": ("a dark cave", 0.2),
           "mid-0": ("a grey elephant", 0.5), "bright-0": ("a white snowfield", 0.9), "bright-1": ("the sun", 0.8)}


@dataclass(frozen=True)
class Prompt:
    id: str
    text: str
    target: float


@dataclass
class Config:
    samples: int = opt(2, check=POSITIVE_INT, help="images per prompt")
    seed: int = opt(0, check=INTEGER, help="image k of a prompt uses seed SEED+k")
    tolerance: float = opt(0.25, check=NON_NEGATIVE_NUMBER, stage="score", help="largest |value - target| passing")


class Brightness(Benchmark):
    name, capability, Config, threshold = "brightness", "generate", Config, 0.05

    def plan(self, model) -> Plan:
        config = {"benchmark": self.name, "samples": self.config.samples, "seed": self.config.seed,
                  "model": model.fingerprint(), "model_hash": model.model_hash()}
        return self._plan([Prompt(k, text, target) for k, (text, target) in PROMPTS.items()], config)

    def _plan(self, items: list[Prompt], config: dict) -> Plan:
        units = [WorkUnit(self.name, p.id, f"{p.target}", k, config["seed"] + k, config["model_hash"])
                 for p in items for k in range(config["samples"])]
        return Plan(config, items, units, batch_size=config["samples"])

    def prepare(self, out: Path, plan: Plan) -> None:
        (out / "prompts.json").write_text(json.dumps([p.__dict__ for p in plan.items]))

    def plan_from_run(self, out: Path, manifest: dict) -> Plan:
        return self._plan([Prompt(**p) for p in json.loads((out / "prompts.json").read_text())], manifest["config"])

    def image_path(self, unit: WorkUnit) -> str:
        return f"images/{unit.item_id}/{unit.sample_index}.png"

    def generate(self, model, units: list[WorkUnit], plan: Plan) -> list[Generated]:
        text = {p.id: p.text for p in plan.items}
        return [Generated(im) for im in model.generate([text[u.item_id] for u in units], [u.seed for u in units])]

    def build_scorer(self) -> Scorer:
        return Scorer()

    def score_plan(self, scorer, items, samples: list[Sample], images_dir: Path) -> ScorePlan:
        targets, tolerance = {p.id: p.target for p in items}, self.config.tolerance

        def process(batch: list[Sample]) -> list[dict]:
            import numpy as np
            from PIL import Image

            out = []
            for s in batch:
                with Image.open(s.path) as im:
                    value = float(np.asarray(im.convert("L"), dtype=np.float64).mean() / 255)
                gap = abs(value - targets[s.item_id])
                out.append({"item_id": s.item_id, "image": s.name, "tag": s.item_id.split("-")[0],
                            "brightness": value, "correct": gap <= tolerance, "reason": f"gap {gap:.3f}"})
            return out

        stage = Stage("score-brightness", samples, process, batch_size=4,
                      key=lambda s: f"{s.name}:{s.sha256[:16]}:{tolerance}", unit_name=lambda s: s.name)
        return ScorePlan({"scorer": "mean-L", "tolerance": tolerance}, "brightness", [stage])

    def summarize(self, records: dict, manifest: dict) -> dict:
        tags: dict[str, list[bool]] = {}
        for r in records["score-brightness"]:
            tags.setdefault(r["tag"], []).append(r["correct"])
        scores = {t: {"score": sum(v) / len(v), "images": len(v)} for t, v in sorted(tags.items())}
        return {"overall": sum(s["score"] for s in scores.values()) / len(scores), "tags": scores}

    @classmethod
    def paired_scores(cls, run) -> Paired:
        items: dict = {}
        for r in run.results:
            items.setdefault(r["item_id"], (r["tag"], {}))[1][r["image"]] = float(r["correct"])
        return Paired(items)
