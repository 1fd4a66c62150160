"""ImgEdit data: the Basic suite's cases and rubrics (pinned, sha256-checked), source images, a demo set.

* Cases ``basic_edit.json`` (737 cases, 9 edit types) and rubrics ``prompts.json`` are downloaded from
  ImgEdit's pinned commit and checked by sha256 (``harness.datafiles.fetch``); offline, ``--data-dir``
  names a folder holding them (same checks). ``--case-version pre-2025-06-16`` selects the older case
  file, whose ``alter`` type is scored with the ``adjust`` rubric (the key was renamed upstream).
* Source images come from ``Benchmark.tar`` of the Hugging Face dataset ``sysuyy/ImgEdit`` (through
  ``huggingface_hub``), recorded by sha256 and extracted once into the cache; offline, ``--source-root``
  or ``--data-dir`` (``Benchmark/singleturn`` or ``singleturn`` inside it) points at the images.
* ``demo``: 18 built-in cases (2 per type) with procedurally drawn source images and short built-in
  rubrics in the official response format. Written by this project; its scores mean nothing.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.api.benchmark import select_by_subset
from harness.core.datafiles import DataFile, cache_dir, fetch, sha256_file
from harness.core.errors import HarnessError
from harness.core.paths import inside, safe_name, safe_relpath

REPO = "https://raw.githubusercontent.com/PKU-YuanGroup/ImgEdit"
COMMIT = "547185d12c08267a862b94248576e1746e479937"
OLD_COMMIT = "8abd55d"  # parent of b3eb8e7 (2025-06-16), which renamed alter -> adjust
CASES = {
    "2025-06-16": DataFile("basic_edit.json", f"{REPO}/{COMMIT}/Benchmark/Basic/basic_edit.json",
                           "5ee9b7d61e918692416f79896300f738598c83adff8de737b25be4aaff72dc69", "--data-dir"),
    "pre-2025-06-16": DataFile("basic_edit.pre-2025-06-16.json", f"{REPO}/{OLD_COMMIT}/Benchmark/Basic/basic_edit.json",
                               "1a0463aa7f778829c03a927ac61745f427022c2cf91a21e5629818c0535b9204", "--data-dir"),
}
RUBRICS = DataFile("prompts.json", f"{REPO}/{COMMIT}/Benchmark/Basic/prompts.json",
                   "f9468dc848776ee0a6c2e2c31e678c7224e9cb61b013747c8c52d4a05627b5a0", "--data-dir")
#: renamed edit types per case-file version (old name -> rubric key)
RENAMED = {"pre-2025-06-16": {"alter": "adjust"}, "2025-06-16": {}}
HF_DATASET = "sysuyy/ImgEdit"
HF_FILE = "Benchmark.tar"
HF_REVISION = "main"  # the tar's sha256 is recorded in every run (the dataset publishes no pinned digest)
DEMO_VERSION = 1


@dataclass(frozen=True)
class Case:
    """One edit: case key (the output is ``<key>.png``), source image id, instruction, edit type."""

    key: str
    source: str
    prompt: str
    edit_type: str
    original_type: str

    def record(self) -> dict[str, Any]:
        return {"id": self.source, "prompt": self.prompt, "edit_type": self.original_type}


@dataclass
class CaseSet:
    """Cases (file order), rubrics by edit type, where the source images are, and provenance."""

    name: str
    label: str
    cases: list[Case]
    rubrics: dict[str, str]
    source_root: Path
    provenance: dict[str, Any] = field(default_factory=dict)

    def select(self, types: list[str] | None, limit: int | None) -> list[Case]:
        """Cases of these types (all if None), at most ``limit`` per type, in file order."""
        return select_by_subset(self.cases, lambda case: case.edit_type, types, limit, flag="--types",
                                subset_noun="edit type")

    def source_path(self, case: Case) -> Path:
        """The case's source image, resolved and refused if it leaves the source root (links included)."""
        return inside(self.source_root, case.source, what=f"case {case.key!r}: source image")


def rubric_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- official files -----------------------------------------------------------------------------------
def load_json(path: Path, what: str) -> Any:
    """A case or rubric file's JSON (UTF-8); the caller checks its shape."""
    from harness.core.jsonio import load_json as read_json

    return read_json(path, f"pass the official {what} (UTF-8 JSON)", expect=None)


def parse_rubrics(data: Any, path: Path) -> dict[str, str]:
    """``prompts.json``: edit type -> rubric text with one ``<edit_prompt>``."""
    if not isinstance(data, dict) or not data:
        raise HarnessError(f"{path}: expected a JSON object edit_type -> rubric text (prompts.json)")
    for key, text in data.items():
        if not isinstance(text, str) or text.count("<edit_prompt>") != 1:
            raise HarnessError(f"{path}: rubric {key!r} must be text with exactly one <edit_prompt> placeholder")
    return dict(data)


def parse_cases(data: Any, path: Path, rubrics: dict[str, str], renamed: dict[str, str],
                version_hint: str = "") -> list[Case]:
    """Validate a ``basic_edit.json``-style dict; an edit type without a rubric is an error naming the case."""
    if not isinstance(data, dict) or not data:
        raise HarnessError(f"{path}: expected a JSON object case key -> {{id, prompt, edit_type}}")
    cases = []
    for key, item in data.items():
        safe_name(key, what="case key", where=str(path))  # it becomes the file name <key>.png
        where = f"{path}: case {key!r}"
        if not isinstance(item, dict):
            raise HarnessError(f"{where}: expected an object with id, prompt, edit_type")
        for name in ("id", "prompt", "edit_type"):
            if not isinstance(item.get(name), str) or not item[name].strip():
                raise HarnessError(f"{where}: field {name!r} missing or not text")
        safe_relpath(item["id"], what="id", where=f"{where} (its id must be a path relative to the image root)")
        original = item["edit_type"]
        edit_type = renamed.get(original, original)
        if edit_type not in rubrics:
            hint = version_hint if original == "alter" else ""
            raise HarnessError(f"{where}: edit_type {original!r} has no rubric in prompts.json (known: "
                               f"{', '.join(sorted(rubrics))}){hint}")
        cases.append(Case(str(key), item["id"], item["prompt"], edit_type, original))
    return cases


def _local(data_dir: str | None, data: DataFile) -> Path | None:
    if data_dir is None:
        return None
    path = Path(data_dir) / data.name
    if not path.is_file():
        raise HarnessError(f"--data-dir {data_dir}: no {data.name} there; put the official file (sha256 "
                           f"{data.sha256[:12]}...) in that folder or drop --data-dir to download it")
    return path


def load_rubrics(rubrics_path: str | None, data_dir: str | None) -> tuple[dict[str, str], str, Path]:
    """The official rubrics (sha256-checked), or a custom file given with ``--rubrics`` (recorded by sha256)."""
    if rubrics_path:
        path = Path(rubrics_path)
        if not path.is_file():
            raise HarnessError(f"--rubrics {path}: no such file")
        return parse_rubrics(load_json(path, "prompts.json"), path), sha256_file(path), path
    path = fetch(RUBRICS, _local(data_dir, RUBRICS))
    return parse_rubrics(load_json(path, "prompts.json"), path), RUBRICS.sha256, path


def load_case_set(cases: str, *, version: str = "2025-06-16", data_dir: str | None = None,
                  source_root: str | None = None, rubrics: str | None = None) -> CaseSet:
    """``official`` (Basic suite), ``demo`` (built in), or a custom JSON path in the Basic schema."""
    if version not in CASES:
        raise HarnessError(f"--case-version {version!r}: use one of {', '.join(CASES)}")
    if cases == "demo":
        return demo_case_set()
    rubric_map, rubric_file_sha, rubric_path = load_rubrics(rubrics, data_dir)
    hint = " — it is the pre-2025-06-16 case file: pass --case-version pre-2025-06-16"
    if cases == "official":
        data = CASES[version]
        path = fetch(data, _local(data_dir, data))
        name, case_sha = "basic", data.sha256
        label = "ImgEdit-Basic" + ("" if version == "2025-06-16" else f" ({version})")
    else:
        path = Path(cases)
        if not path.is_file():
            raise HarnessError(f"--cases {cases!r}: use 'official', 'demo' or the path of a case JSON file")
        name, label, case_sha = "custom", "ImgEdit-custom", sha256_file(path)
    case_list = parse_cases(load_json(path, "basic_edit.json"), path, rubric_map, RENAMED[version], hint)
    if rubrics and name == "basic":
        label += " (custom rubrics)"
    root, root_prov = resolve_source_root(source_root, data_dir)
    prov = {"cases": {"name": name, "file": path.name, "sha256": case_sha, "version": version},
            "rubrics": {"file": rubric_path.name, "sha256": rubric_file_sha}, "sources": root_prov}
    return CaseSet(name, label, case_list, rubric_map, root, prov)


def resolve_source_root(source_root: str | None, data_dir: str | None) -> tuple[Path, dict[str, Any]]:
    """Where ``Benchmark/singleturn`` is: given, inside --data-dir, or extracted from the downloaded tar."""
    if source_root:
        root = Path(source_root)
        if not root.is_dir():
            raise HarnessError(f"--source-root {root}: no such folder (the Benchmark/singleturn folder of "
                               "ImgEdit's Benchmark.tar)")
        return root, {"root": str(root), "origin": "--source-root"}
    if data_dir:
        for sub in ("Benchmark/singleturn", "singleturn"):
            if (Path(data_dir) / sub).is_dir():
                return Path(data_dir) / sub, {"root": str(Path(data_dir) / sub), "origin": "--data-dir"}
        tar = Path(data_dir) / HF_FILE
        if tar.is_file():
            return extract_benchmark(tar)
        raise HarnessError(f"--data-dir {data_dir}: no Benchmark/singleturn folder or {HF_FILE} there; add the "
                           f"images (from {HF_DATASET}/{HF_FILE}) or pass --source-root DIR")
    return extract_benchmark(download_benchmark_tar())


def download_benchmark_tar() -> Path:
    """``Benchmark.tar`` from the HF dataset through huggingface_hub (its own cache); offline, a clear error."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise HarnessError("the ImgEdit source images need huggingface_hub (pip install "
                           "'dreamlite-harness[imgedit]'), or pass --source-root/--data-dir") from exc
    try:
        return Path(hf_hub_download(HF_DATASET, HF_FILE, repo_type="dataset", revision=HF_REVISION))
    except Exception as exc:  # offline, gated, network: all mean "give me a local copy"
        raise HarnessError(f"could not download {HF_FILE} from the HF dataset {HF_DATASET} "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); offline, pass "
                           "--source-root DIR (Benchmark/singleturn) or --data-dir DIR") from exc


def extract_benchmark(tar_path: Path) -> tuple[Path, dict[str, Any]]:
    """Extract the tar once into the cache (keyed by its sha256); later calls reuse the folder."""
    import shutil
    import tarfile
    import tempfile

    digest = sha256_file(tar_path)
    dest = cache_dir() / "imgedit" / f"benchmark-{digest[:16]}"
    prov = {"tar": str(tar_path), "tar_sha256": digest, "origin": f"hf://{HF_DATASET}/{HF_FILE}"}
    root = dest / "Benchmark" / "singleturn"
    if (dest / ".complete").is_file():
        return root, prov | {"root": str(root)}
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".extract-"))
    try:
        with tarfile.open(tar_path) as tar:
            tar.extractall(tmp, filter="data")
        (tmp / ".complete").write_text(digest + "\n")
        try:
            os.replace(tmp, dest)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise HarnessError(f"{tar_path}: could not extract ({exc}); delete it and rerun to download again") from exc
    if not root.is_dir():
        raise HarnessError(f"{tar_path}: has no Benchmark/singleturn folder; is it ImgEdit's {HF_FILE}?")
    return root, prov | {"root": str(root)}


def check_sources(case_set: CaseSet, cases: list[Case]) -> dict[str, str]:
    """sha256 of every source image used; missing ones are one error listing them."""
    missing, shas = [], {}
    for case in cases:
        path = case_set.source_path(case)
        if not path.is_file():
            missing.append(case.source)
        elif case.source not in shas:
            shas[case.source] = sha256_file(path)
    if missing:
        shown = ", ".join(sorted(set(missing))[:5])
        raise HarnessError(f"{case_set.source_root}: {len(set(missing))} source image(s) missing (e.g. {shown}); "
                           "point --source-root at ImgEdit's Benchmark/singleturn folder")
    return shas


# -- demo -----------------------------------------------------------------------------------------------
DEMO_LABELS: dict[str, tuple[str, str, str]] = {
    "add": ("Prompt Compliance", "Visual Naturalness", "Physical & Detail Coherence"),
    "adjust": ("Prompt Compliance", "Visual Seamlessness", "Physical & Detail Fidelity"),
    "extract": ("Object Identity", "Mask Precision", "Visual Quality"),
    "replace": ("Prompt Compliance", "Visual Naturalness", "Physical & Detail Integrity"),
    "remove": ("Prompt Compliance", "Visual Naturalness", "Physical & Detail Integrity"),
    "background": ("Instruction Compliance", "Visual Seamlessness", "Physical Consistency"),
    "style": ("Style Fidelity", "Content Preservation", "Rendering Quality"),
    "compose": ("Instruction Compliance", "Visual Naturalness", "Physical Consistency & Fine Detail"),
    "action": ("Action Fidelity", "Identity Preservation", "Visual & Anatomical Coherence"),
}
_DEMO_PROMPTS: dict[str, tuple[str, str]] = {
    "add": ("Add a small yellow star in the top left corner.", "Add a blue square next to the circle."),
    "adjust": ("Change the circle's color to green.", "Make the square darker."),
    "extract": ("Extract the red circle and place it on a white background.",
                "Extract the triangle onto a pure white background."),
    "replace": ("Replace the circle with a square.", "Replace the triangle with a purple circle."),
    "remove": ("Remove the circle.", "Remove the small square."),
    "background": ("Change the background to a night sky.", "Make the background a sandy beach."),
    "style": ("Transfer the image into a watercolor style.", "Transfer the image into a pixel-art style."),
    "compose": ("Remove the square and make the circle orange.", "Add a star and change the background to grey."),
    "action": ("Make the stick figure raise both arms.", "Make the stick figure sit down."),
}
DEMO_SIZES = ((96, 64), (64, 80))


def demo_rubric(edit_type: str) -> str:
    """A short rubric in the official response format (same labels as ``prompts.json``)."""
    a, b, c = DEMO_LABELS[edit_type]
    return (f"\nYou are a data rater grading {edit_type} edits (ImgEdit demo rubric, not the official one). "
            "You will be given two images (before and after editing) and the editing instruction. Rate three aspects "
            f"from 1 to 5:\n\n{a}\n{b}\n{c}\n"
            "The second and third score should no higher than first score!!!\n\nExample Response Format:\n"
            "Brief reasoning: A short explanation of the score based on the criteria above, no more than 20 words.\n"
            f"{a}: A number from 1 to 5.\n{b}: A number from 1 to 5.\n{c}: A number from 1 to 5.\n"
            "editing instruction is : <edit_prompt>.\n\nBelow are the images before and after editing:\n")


def draw_demo_image(edit_type: str, index: int) -> Any:
    """A deterministic drawing: coloured background, circle, square, triangle (a stick figure for action)."""
    from PIL import Image, ImageDraw

    w, h = DEMO_SIZES[index % 2]
    seed = sum(map(ord, edit_type)) + 31 * index
    bg = (60 + seed % 150, 90 + (seed * 7) % 120, 120 + (seed * 13) % 100)
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    if edit_type == "action":
        cx = w // 2
        d.ellipse((cx - 6, 8, cx + 6, 20), outline=(0, 0, 0), width=2)
        d.line((cx, 20, cx, h - 24), fill=(0, 0, 0), width=2)
        d.line((cx - 12, 30, cx + 12, 30), fill=(0, 0, 0), width=2)
        d.line((cx, h - 24, cx - 10, h - 6), fill=(0, 0, 0), width=2)
        d.line((cx, h - 24, cx + 10, h - 6), fill=(0, 0, 0), width=2)
        return im
    d.ellipse((6, 6, 6 + h // 2, 6 + h // 2), fill=(220, 40, 40))
    d.rectangle((w // 2, h // 2, w // 2 + h // 4, h // 2 + h // 4), fill=(40, 60, 200))
    d.polygon([(w - 20, h - 6), (w - 6, h - 6), (w - 13, h - 22)], fill=(240, 200, 30))
    return im


def demo_case_set() -> CaseSet:
    """The built-in demo: 2 cases per type, drawn once into the cache (PNG, deterministic)."""
    from harness.core.fsio import atomic_write_bytes

    root = cache_dir() / "imgedit" / f"demo-v{DEMO_VERSION}"
    cases, n = [], 0
    for edit_type, prompts in _DEMO_PROMPTS.items():
        for i, prompt in enumerate(prompts):
            n += 1
            source = f"{edit_type}/{i}.png"
            path = root / source
            if not path.is_file():
                import io

                buf = io.BytesIO()
                draw_demo_image(edit_type, i).save(buf, format="PNG")
                atomic_write_bytes(path, buf.getvalue(), fsync=False)
            cases.append(Case(str(n), source, prompt, edit_type, edit_type))
    rubrics = {t: demo_rubric(t) for t in _DEMO_PROMPTS}
    prov = {"cases": {"name": "demo", "version": DEMO_VERSION, "sha256": _demo_sha(cases, rubrics)},
            "rubrics": {"file": "built-in demo rubrics"}, "sources": {"root": str(root), "origin": "drawn"}}
    return CaseSet("demo", "ImgEdit-demo", cases, rubrics, root, prov)


def _demo_sha(cases: list[Case], rubrics: dict[str, str]) -> str:
    from harness.core.hashing import content_hash

    return content_hash([[c.key, c.record()] for c in cases] + [rubrics], 64)
