"""Score GenEval image folders: find samples, detect in batches, CLIP colours in one pass, verdicts.

Reads the official layout (``NNNNN/metadata.jsonl`` + ``NNNNN/samples/<digits>.png``), written by this
harness or by anyone else, and writes the official-compatible ``results.jsonl``. Scoring is a
resumable stage: one record per image, keyed by (image sha256, prompt metadata, scorer fingerprint).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.api.scorer import Scorer
from harness.benchmarks.geneval.classes import CLASS_NAMES
from harness.benchmarks.geneval.prompts import is_prompt_folder
from harness.benchmarks.geneval.rules import (
    Options,
    color_requests,
    detection_details,
    evaluate,
    filter_detections,
    validate_metadata,
)
from harness.core.errors import HarnessError
from harness.core.fsio import atomic_write_text
from harness.core.hashing import content_hash, sha256_file
from harness.core.images import check_pixels
from harness.core.jsonio import read_text
from harness.core.options import FRACTION, NON_NEGATIVE_NUMBER, POSITIVE_INT, check_options, parse_pairs
from harness.core.paths import inside

SAMPLE_NAME = re.compile(r"\d+\.png")  # the official evaluator's re.match: digits then ".png", prefix match
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Sample:
    """One image to score and the prompt metadata it answers."""

    path: Path
    item_id: str
    metadata: dict[str, Any] = field(compare=False)
    sha256: str = ""
    #: why the model could not make this image (then ``path`` does not exist and the image counts as incorrect)
    failure: str | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return f"{self.item_id}/samples/{self.path.name}"


@dataclass
class Discovery:
    """What was found in an image folder, including what was skipped and why (never silently)."""

    samples: list[Sample]
    skipped: list[str]


def discover(images_dir: str | os.PathLike, *, only: set[str] | None = None) -> Discovery:
    """Find prompt folders and PNG samples like the official evaluator, but report what it skips.

    ``only`` restricts to these relative sample names (``NNNNN/samples/KKKK.png``).
    """
    root = Path(images_dir)
    if not root.is_dir():
        raise HarnessError(f"--images {root}: no such folder")
    samples: list[Sample] = []
    skipped: list[str] = []
    for folder in sorted(p for p in root.iterdir() if is_prompt_folder(p.name) and p.is_dir()):
        inside(root, folder.name, "metadata.jsonl", what="prompt folder")  # a link out of --images is refused
        meta_path = folder / "metadata.jsonl"
        if not meta_path.is_file():
            raise HarnessError(f"{meta_path}: missing; each prompt folder needs its metadata.jsonl "
                               "(one JSON object, the prompt's line of evaluation_metadata.jsonl)")
        try:
            meta = json.loads(read_text(meta_path, "write the prompt's metadata line there, as UTF-8"))
            validate_metadata(meta, CLASS_NAMES, str(meta_path))
        except json.JSONDecodeError as exc:
            raise HarnessError(f"{meta_path}: not one JSON object ({exc.msg}); write the prompt's metadata "
                               "line there") from exc
        except ValueError as exc:
            raise HarnessError(str(exc)) from exc
        sample_dir = folder / "samples"
        names = sorted(os.listdir(sample_dir)) if sample_dir.is_dir() else []
        for name in names:
            rel = f"{folder.name}/samples/{name}"
            if not SAMPLE_NAME.match(name) or not (sample_dir / name).is_file():
                skipped.append(rel)
                continue
            if only is not None and rel not in only:
                continue
            inside(root, rel, what="sample")
            check_pixels(sample_dir / name, "sample")
            samples.append(Sample(sample_dir / name, folder.name, meta, sha256_file(sample_dir / name)))
    if not samples:
        raise HarnessError(
            f"{root}: no samples found; expected NNNNN/metadata.jsonl and NNNNN/samples/0000.png "
            "(the official GenEval layout; `harness run geneval` writes it)"
        )
    return Discovery(samples, skipped)


def load_image(path: Path) -> Any:
    """Open a sample as RGB like the official code (EXIF transpose); a clear error if it is not a PNG or if
    it has more pixels than the budget (``--max-pixels``, checked from the header before decoding)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    with open(path, "rb") as f:
        head = f.read(8)
    if head != PNG_SIGNATURE:
        raise HarnessError(f"{path}: not a PNG file (the name says .png); re-save it as PNG or delete it and "
                           "rerun `harness run` to regenerate it")
    check_pixels(path, "sample")
    try:
        with Image.open(path) as im:
            im.load()
            return ImageOps.exif_transpose(im).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise HarnessError(f"{path}: corrupt PNG ({exc}); delete it and rerun `harness run` to regenerate it, "
                           "or replace it") from exc


def score_key(sample: Sample, scorer_hash: str) -> str:
    """Key of one scoring unit: the image's bytes, its prompt metadata and the scorer's fingerprint."""
    return content_hash({"image": sample.sha256, "metadata": sample.metadata, "scorer": scorer_hash}, 24)


#: version of the decision rules (``rules.py``); part of the fingerprint, so records of older rules are redone
RULES_VERSION = 2


class GenEvalScorer(Scorer):
    """Detector + CLIP colour classifier + the pure rules, for batches of samples.

    Built from the command's options without loading anything; :meth:`resolve` checks the detector's and
    CLIP's weights in seconds; :meth:`load` loads both once per process.
    """

    name: ClassVar[str] = "geneval"
    defaults: ClassVar[dict[str, Any]] = {"detector": "mask2former-hf", "detector_args": "",
                                          "clip": "ViT-L-14:openai", "device": "auto", "options": ""}

    def __init__(self, **options: Any):
        from harness.registry import registry
        from harness.scorers.clip import check_clip_spec

        super().__init__(**options)
        self.constants = parse_constants(self.options["options"])
        check_clip_spec(self.options["clip"])  # a local checkpoint must be a safe tensor file
        self.detector_cls = registry("detectors").load(self.options["detector"])
        det_opts = parse_pairs(self.options["detector_args"], "--detector-args")
        if self.options["device"] != "auto":
            det_opts.setdefault("device", self.options["device"])
        self.detector = self.detector_cls(**det_opts)  # checks its options; loads nothing
        self.colors: Any = None

    @classmethod
    def of(cls, detector: Any, colors: Any, constants: Options | None = None) -> GenEvalScorer:
        """A scorer over components already built (a detector object and a colour classifier): for tests and
        notebooks that compare two detectors on the same CLIP."""
        scorer = cls.__new__(cls)
        scorer.options = dict(cls.defaults)
        scorer.constants = constants or Options()
        scorer.detector, scorer.detector_cls, scorer.colors = detector, type(detector), colors
        return scorer

    @property
    def label(self) -> str:  # type: ignore[override]
        """``GenEval (official detector)``, ``GenEval-HF`` or the tiny label: never mixed in one number."""
        return self.detector.label

    def resolve(self) -> None:
        from harness.scorers.clip import resolve_clip

        self.detector.resolve()
        resolve_clip(self.options["clip"])

    def load(self) -> None:
        from harness.benchmarks.geneval.colors import ColorClassifier

        if self.colors is None:
            self.detector.load()
            self.colors = ColorClassifier(self.options["clip"], device=self.options["device"])

    def fingerprint(self) -> dict[str, Any]:
        return {"detector": self.detector.fingerprint(), "colors": self.colors.fingerprint(),
                "options": self.constants.__dict__, "rules": RULES_VERSION}

    def score_batch(self, samples: Sequence[Sample]) -> list[dict[str, Any]]:
        """One record per sample: verdict, reason and the filtered detections (official ``details``); an image the
        model could not make is incorrect, with the reason, and counted as ``generation_failed``."""
        made = iter(self._score_made([s for s in samples if s.failure is None]))
        return [next(made) if s.failure is None else
                {"image": s.name, "item_id": s.item_id, "sha256": s.sha256, "tag": s.metadata["tag"],
                 "prompt": s.metadata["prompt"], "correct": False, "reason": f"generation failed: {s.failure}",
                 "metadata": s.metadata, "details": {}, "colors": {}, "generation_failed": True} for s in samples]

    def _score_made(self, samples: Sequence[Sample]) -> list[dict[str, Any]]:
        if not samples:
            return []
        images = [load_image(s.path) for s in samples]
        raw = self.detector.detect(images, min_score=self.constants.min_score)
        detected = [filter_detections(r, s.metadata["tag"], self.constants) for r, s in zip(raw, samples, strict=True)]
        jobs: list[tuple[int, int, int]] = []  # (sample, include clause, object)
        crops = []
        for i, (s, det) in enumerate(zip(samples, detected, strict=True)):
            for clause, classname, objs in color_requests(s.metadata, det):
                for j, obj in enumerate(objs):
                    jobs.append((i, clause, j))
                    crops.append((images[i], obj, classname))
        found = self.colors.classify(crops)
        colors: list[dict[int, list[str]]] = [{} for _ in samples]
        for (i, clause, _), color in zip(jobs, found, strict=True):
            colors[i].setdefault(clause, []).append(color)
        records = []
        for s, det, col in zip(samples, detected, colors, strict=True):
            verdict = evaluate(s.metadata, det, col, self.constants)
            records.append({
                "image": s.name, "item_id": s.item_id, "sha256": s.sha256,
                "tag": s.metadata["tag"], "prompt": s.metadata["prompt"], "correct": verdict.correct,
                "reason": verdict.reason, "metadata": s.metadata,
                "details": detection_details(det),
                "colors": {str(k): v for k, v in col.items()},
            })
        return records


#: what each GenEval constant accepts (``--options``)
OPTION_TYPES = {"threshold": FRACTION, "counting_threshold": FRACTION, "max_overlap": FRACTION,
                "position_threshold": NON_NEGATIVE_NUMBER, "max_objects": POSITIVE_INT}


def parse_constants(text: str) -> Options:
    """``--options threshold=0.3,max_objects=16`` → :class:`Options` (unknown keys, bad values: an error)."""
    defaults = {f.name: f.default for f in dataclasses.fields(Options)}
    return Options(**check_options(parse_pairs(text, "--options"), defaults, flag="--options", owner="GenEval",
                                   checks=OPTION_TYPES))


def write_results(records: Sequence[dict[str, Any]], images_dir: Path, path: Path) -> None:
    """The official ``results.jsonl``: filename, tag, prompt, correct, reason, metadata, details."""
    lines = []
    for r in records:
        lines.append(json.dumps({
            "filename": str(images_dir / r["image"]), "tag": r["tag"], "prompt": r["prompt"],
            "correct": bool(r["correct"]), "reason": r["reason"], "metadata": json.dumps(r["metadata"]),
            "details": json.dumps(r["details"]),
        }, ensure_ascii=False))
    atomic_write_text(path, "\n".join(lines) + "\n")
