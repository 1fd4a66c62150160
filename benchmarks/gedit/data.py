"""GEdit-Bench data: the Hugging Face dataset at a pinned revision, a local copy, or a built-in demo set.

Every source is read into one form: the rows (task type, key, instruction, language, intersection flag) and the
source images as PNG files in the official layout, ``fullset/<task_type>/<language>/<key>_SRCIMG.png``, in a
cache folder keyed by the data's content (written once; docs/gedit.md, "Data").

* ``official``: ``stepfun-ai/GEdit-Bench`` through ``huggingface_hub.snapshot_download`` at :data:`REVISION`
  (``--revision`` for another); the resolved commit and the sha256 of every downloaded file are recorded.
  The dataset's single split is read, as the official scorer means to (it iterates the ``DatasetDict`` itself,
  which yields split names and fails; docs/gedit.md).
* ``--data-dir DIR``: offline, a snapshot of the dataset repo (parquet or arrow shards, read with pyarrow) or an
  exported folder (``metadata.jsonl`` with the dataset's fields and ``input_image`` naming an image file
  relative to DIR).
* ``demo``: 11 task types x 2 edits x (en, cn) drawn in code; its scores mean nothing.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.api.benchmark import select_by_subset
from harness.core.datafiles import cache_dir
from harness.core.errors import HarnessError
from harness.core.hashing import content_hash, sha256_bytes, sha256_file
from harness.core.paths import inside, safe_name, safe_relpath

HF_DATASET = "stepfun-ai/GEdit-Bench"
#: the dataset revision every official run uses unless ``--revision`` says otherwise (docs/gedit.md, "Data")
REVISION = "58159f3de6689982b1df7f1a6c557ded16548a24"
#: the official order of the 11 task groups (every loop and the macro mean follow it)
GROUPS: tuple[str, ...] = ("background_change", "color_alter", "material_alter", "motion_change", "ps_human",
                           "style_change", "subject-add", "subject-remove", "subject-replace", "text_change",
                           "tone_transfer")
LANGUAGES: tuple[str, ...] = ("en", "cn")
FIELDS: tuple[str, ...] = ("task_type", "key", "instruction", "instruction_language", "Intersection_exist")
DATA_SUFFIXES = (".parquet", ".arrow")
DEMO_VERSION = 1
#: bump when the materialized cache layout changes
CACHE_VERSION = 1


@dataclass(frozen=True)
class Case:
    """One row: an edit instruction in one language for one source image."""

    task_type: str
    key: str
    instruction: str
    language: str
    intersection: bool

    @property
    def id(self) -> str:
        """The row's identity, ``task_type/language/key`` (the official layout keys on all three)."""
        return f"{self.task_type}/{self.language}/{self.key}"

    @property
    def edited_rel(self) -> str:
        return f"fullset/{self.task_type}/{self.language}/{self.key}.png"

    @property
    def source_rel(self) -> str:
        return f"fullset/{self.task_type}/{self.language}/{self.key}_SRCIMG.png"

    def record(self) -> dict[str, Any]:
        """The row in the dataset's field names (``cases.json``)."""
        return {"task_type": self.task_type, "key": self.key, "instruction": self.instruction,
                "instruction_language": self.language, "Intersection_exist": self.intersection}


@dataclass
class CaseSet:
    """All rows (dataset order), the folder holding ``fullset/...`` source PNGs, and where they came from."""

    name: str
    label: str
    cases: list[Case]
    root: Path
    provenance: dict[str, Any] = field(default_factory=dict)

    def select(self, languages: Sequence[str], types: list[str] | None, limit: int | None) -> list[Case]:
        """The rows of these languages and task types (all if None), at most ``limit`` per task and language, in
        dataset order."""
        known = ordered_groups({c.task_type for c in self.cases})
        chosen: set[str] = set()
        for language in languages:
            rows = [c for c in self.cases if c.language == language]
            chosen |= {c.id for c in select_by_subset(rows, lambda c: c.task_type, types, limit, flag="--types",
                                                      subset_noun="task type", known=known)}
        return [c for c in self.cases if c.id in chosen]

    def source_path(self, case: Case) -> Path:
        return inside(self.root, case.source_rel, what=f"case {case.id!r}: source image")

    @property
    def sha256(self) -> str:
        """The rows' content hash (images by their sha256 in the provenance)."""
        return str(self.provenance.get("sha256", ""))


def ordered_groups(groups: Iterable[str]) -> list[str]:
    """Task types in the official order, others after, sorted."""
    present = set(groups)
    return [g for g in GROUPS if g in present] + sorted(present - set(GROUPS))


# -- rows ---------------------------------------------------------------------------------------------------
def parse_row(row: Mapping[str, Any], where: str) -> Case:
    """One dataset row → :class:`Case`; a missing or bad field is one line naming ``where`` and the field."""
    for name in FIELDS[:4]:
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise HarnessError(f"{where}: field {name!r} missing or not text")
    task, key, language = row["task_type"], row["key"], row["instruction_language"]
    for value, what in ((task, "task_type"), (language, "instruction_language"), (key, "key")):
        safe_name(value, what=what, where=where)  # each becomes a folder or file name of the layout
    if key.endswith("_SRCIMG"):
        raise HarnessError(f"{where}: key {key!r} ends in _SRCIMG, which the layout reserves for source images")
    return Case(task, key, row["instruction"], language, bool(row.get("Intersection_exist")))


def check_unique(cases: Sequence[Case], where: str) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.id in seen:
            raise HarnessError(f"{where}: row {case.id!r} appears twice (task_type, instruction_language and key "
                               "must identify a row)")
        seen.add(case.id)


def read_cases_json(path: Path) -> list[Case]:
    """A run's ``cases.json`` (a list of rows in the dataset's field names)."""
    from harness.core.jsonio import load_json

    data = load_json(path, "it is written by `harness run gedit`; rerun it", expect=None)
    if not isinstance(data, list):
        raise HarnessError(f"{path}: expected a JSON list of rows; it is written by `harness run gedit`")
    cases = [parse_row(row if isinstance(row, dict) else {}, f"{path} row {i}") for i, row in enumerate(data)]
    check_unique(cases, str(path))
    return cases


# -- loading ------------------------------------------------------------------------------------------------
def load_case_set(cases: str, *, data_dir: str | None = None, revision: str = REVISION) -> CaseSet:
    """``official`` (the hub at ``revision``, or ``--data-dir``) or ``demo``."""
    if cases == "demo":
        return demo_case_set()
    if cases != "official":
        raise HarnessError(f"--cases {cases!r}: use 'official' (the Hugging Face dataset, or --data-dir) or 'demo'")
    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise HarnessError(f"--data-dir {folder}: no such folder; pass a snapshot of {HF_DATASET} (parquet/arrow "
                               "files) or an exported folder with metadata.jsonl")
        return read_folder(folder, {"origin": "--data-dir", "folder": str(folder)})
    folder, resolved = download(revision)
    # a snapshot's files link into the repo's blobs/ folder beside snapshots/: links may resolve up to the repo
    return read_folder(folder, {"origin": f"hf://datasets/{HF_DATASET}", "revision": revision, "resolved": resolved},
                       contain=folder.parent.parent)


def download(revision: str) -> tuple[Path, str]:
    """The dataset repo at ``revision`` through huggingface_hub (its own cache); the folder and the commit."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise HarnessError("the GEdit-Bench data needs huggingface_hub (pip install 'dreamlite-harness[imgedit]'), "
                           "or pass --data-dir DIR") from exc
    try:
        folder = Path(snapshot_download(HF_DATASET, repo_type="dataset", revision=revision))
    except Exception as exc:  # offline, gated, unknown revision, network: all mean "give me a local copy"
        raise HarnessError(f"could not download the HF dataset {HF_DATASET} at revision {revision} "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); offline, pass --data-dir "
                           "DIR (a snapshot of the dataset or an exported folder)") from exc
    return folder, folder.name  # snapshots are stored under their commit hash


def data_files(folder: Path) -> list[Path]:
    """The dataset's shards under ``folder`` (parquet or arrow; ``cache-*.arrow`` files of datasets skipped)."""
    files = [p for p in sorted(folder.rglob("*")) if p.suffix in DATA_SUFFIXES and p.is_file()
             and not p.name.startswith("cache-") and ".cache" not in p.relative_to(folder).parts]
    return files


def read_folder(folder: Path, origin: dict[str, Any], contain: Path | None = None) -> CaseSet:
    """Rows and source images of a dataset folder, materialized once into the cache (keyed by content); image files
    must resolve inside ``contain`` (default: the folder)."""
    metadata = folder / "metadata.jsonl"
    if metadata.is_file():
        inputs = [metadata]
    else:
        inputs = data_files(folder)
        if not inputs:
            raise HarnessError(f"{folder}: no metadata.jsonl and no parquet/arrow files; pass a snapshot of "
                               f"{HF_DATASET} or an exported folder (docs/gedit.md, 'Data')")
    stamp = content_hash([CACHE_VERSION, origin.get("resolved"),
                          [[str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns] for p in inputs]], 16)
    dest = cache_dir() / "gedit" / f"data-{stamp}"
    if not (dest / ".complete").is_file():
        rows = read_jsonl_rows(folder, metadata, contain or folder) if metadata.is_file() else read_arrow_rows(inputs)
        materialize(dest, rows, {"files": {str(p.relative_to(folder)): sha256_file(p) for p in inputs}})
    return cached_case_set(dest, origin)


def cached_case_set(dest: Path, origin: dict[str, Any]) -> CaseSet:
    manifest = json.loads((dest / "manifest.json").read_text(encoding="utf-8"))
    cases = [Case(**row) for row in manifest["rows"]]
    prov = {**origin, "files": manifest["files"], "sha256": manifest["sha256"], "rows": len(cases),
            "cache": str(dest)}
    return CaseSet("official", "GEdit-Bench", cases, dest, prov)


def materialize(dest: Path, rows: Iterator[tuple[Case, bytes]], extra: dict[str, Any]) -> None:
    """Write every row's source image as ``fullset/.../<key>_SRCIMG.png`` (PNG bytes kept, others re-encoded)
    and a manifest of the rows, into a temporary folder renamed into place when complete."""
    import shutil
    import tempfile

    from harness.core.fsio import atomic_write_text

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".materialize-"))
    try:
        cases, shas = [], {}
        for case, image in rows:
            png = as_png(image, case.id)
            path = tmp / case.source_rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png)
            cases.append(case)
            shas[case.id] = sha256_bytes(png)
        if not cases:
            raise HarnessError(f"the dataset has no rows ({', '.join(extra.get('files') or ['no files'])}); "
                               f"pass a snapshot of {HF_DATASET} or an exported folder")
        check_unique(cases, "the dataset")
        rows_data = [{"task_type": c.task_type, "key": c.key, "instruction": c.instruction, "language": c.language,
                      "intersection": c.intersection} for c in cases]
        manifest = {**extra, "rows": rows_data, "images": shas, "sha256": content_hash([rows_data, shas], 64)}
        atomic_write_text(tmp / "manifest.json", json.dumps(manifest, ensure_ascii=False, indent=1) + "\n")
        (tmp / ".complete").write_text("1\n")
        try:
            os.replace(tmp, dest)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def as_png(data: bytes, what: str) -> bytes:
    """PNG bytes as they are; any other image re-encoded to PNG (as the official generation saves the source)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            buf = io.BytesIO()
            im.save(buf, format="PNG")
    except OSError as exc:
        raise HarnessError(f"row {what!r}: input_image is not a readable image ({exc})") from None
    return buf.getvalue()


def read_jsonl_rows(folder: Path, metadata: Path, contain: Path) -> Iterator[tuple[Case, bytes]]:
    """An exported folder: ``metadata.jsonl`` rows with ``input_image`` (or ``file_name``) naming the image (a
    relative path; resolved, it must stay inside ``contain``)."""
    try:
        lines = metadata.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise HarnessError(f"{metadata}: not UTF-8 text; export the rows as JSON lines") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{metadata} line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise HarnessError(f"{where}: not valid JSON; one JSON object per line") from None
        if not isinstance(row, dict):
            raise HarnessError(f"{where}: expected a JSON object")
        case = parse_row(row, where)
        rel = row.get("input_image", row.get("file_name"))
        safe_relpath(rel, what="input_image", where=f"{where} (a path relative to {folder})")
        inside(contain, *Path(folder, rel).relative_to(contain).parts, what=f"{where}: input_image")
        path = folder / rel
        if not path.is_file():
            raise HarnessError(f"{where}: input_image {rel!r} not found under {folder}")
        yield case, path.read_bytes()


def read_arrow_rows(files: Sequence[Path]) -> Iterator[tuple[Case, bytes]]:
    """Parquet or arrow shards (the Hugging Face dataset's own files), through pyarrow; only the needed columns."""
    try:
        import pyarrow as pa
        import pyarrow.ipc as ipc
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise HarnessError(f"{files[0].parent}: reading the dataset's {files[0].suffix} files needs pyarrow "
                           "(pip install pyarrow), or pass --data-dir with an exported folder (metadata.jsonl)") \
            from exc
    wanted = [*FIELDS, "input_image"]
    for path in files:
        try:
            if path.suffix == ".parquet":
                names = pq.read_schema(path).names
                table = pq.read_table(path, columns=[c for c in wanted if c in names])
            else:
                with pa.memory_map(str(path)) as source:
                    try:
                        table = ipc.open_stream(source).read_all()
                    except pa.ArrowInvalid:
                        table = ipc.open_file(source).read_all()
                table = table.select([c for c in wanted if c in table.column_names])
        except (OSError, pa.ArrowException) as exc:
            raise HarnessError(f"{path}: not a readable {path.suffix[1:]} file ({exc}); download it again") from None
        missing = [c for c in wanted if c not in table.column_names and c != "Intersection_exist"]
        if missing:
            raise HarnessError(f"{path}: column(s) {', '.join(missing)} missing; is it {HF_DATASET}?")
        for i, row in enumerate(table.to_pylist()):
            where = f"{path} row {i}"
            image = row.get("input_image")
            data = image.get("bytes") if isinstance(image, dict) else image if isinstance(image, bytes) else None
            if not data:
                raise HarnessError(f"{where}: input_image holds no image bytes")
            yield parse_row(row, where), data


# -- demo ---------------------------------------------------------------------------------------------------
_DEMO: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "background_change": (("Change the background to a night sky.", "把背景换成夜空。"),
                          ("Make the background a sandy beach.", "把背景变成沙滩。")),
    "color_alter": (("Make the circle green.", "把圆变成绿色。"), ("Turn the square purple.", "把正方形变成紫色。")),
    "material_alter": (("Make the circle look like glass.", "让圆看起来像玻璃。"),
                       ("Turn the square into wood.", "把正方形变成木头。")),
    "motion_change": (("Make the figure raise both arms.", "让小人举起双臂。"),
                      ("Make the figure sit down.", "让小人坐下。")),
    "ps_human": (("Smooth the figure's outline.", "让小人的轮廓更平滑。"), ("Brighten the face.", "提亮脸部。")),
    "style_change": (("Turn the picture into a watercolor.", "把图片变成水彩画。"),
                     ("Render it as pixel art.", "把它渲染成像素画。")),
    "subject-add": (("Add a yellow star in the top left corner.", "在左上角加一颗黄色的星星。"),
                    ("Add a blue square next to the circle.", "在圆旁边加一个蓝色正方形。")),
    "subject-remove": (("Remove the circle.", "去掉圆。"), ("Remove the small square.", "去掉小正方形。")),
    "subject-replace": (("Replace the circle with a square.", "把圆换成正方形。"),
                        ("Replace the triangle with a heart.", "把三角形换成爱心。")),
    "text_change": (("Change the text to 'HELLO'.", "把文字改成'HELLO'。"),
                    ("Write 'GEdit' at the top.", "在顶部写上'GEdit'。")),
    "tone_transfer": (("Give the picture a warm sunset tone.", "给图片加上温暖的日落色调。"),
                      ("Make the picture black and white.", "把图片变成黑白。")),
}
DEMO_SIZES = ((64, 48), (48, 64))


def draw_demo_image(task: str, index: int) -> Any:
    """A deterministic drawing for a demo edit: background, circle, square and triangle, or a stick figure."""
    from PIL import Image, ImageDraw

    w, h = DEMO_SIZES[index % 2]
    seed = sum(map(ord, task)) * 7 + 53 * index
    im = Image.new("RGB", (w, h), (40 + seed % 170, 70 + (seed * 5) % 150, 90 + (seed * 11) % 140))
    d = ImageDraw.Draw(im)
    if task in ("motion_change", "ps_human"):
        cx = w // 2
        d.ellipse((cx - 5, 6, cx + 5, 16), outline=(0, 0, 0), width=2)
        d.line((cx, 16, cx, h - 18), fill=(0, 0, 0), width=2)
        d.line((cx - 10, 24, cx + 10, 24), fill=(0, 0, 0), width=2)
        d.line((cx, h - 18, cx - 8, h - 4), fill=(0, 0, 0), width=2)
        d.line((cx, h - 18, cx + 8, h - 4), fill=(0, 0, 0), width=2)
        return im
    d.ellipse((4, 4, 4 + h // 2, 4 + h // 2), fill=(220, 40, 40))
    d.rectangle((w // 2, h // 2, w // 2 + h // 4, h // 2 + h // 4), fill=(40, 60, 200))
    d.polygon([(w - 16, h - 4), (w - 4, h - 4), (w - 10, h - 16)], fill=(240, 200, 30))
    if task == "text_change":
        d.text((4, h - 14), "abc", fill=(255, 255, 255))
    return im


def demo_rows() -> Iterator[tuple[Case, bytes]]:
    """The demo rows: per task two edits, each in English and Chinese under one key (as 32 hex digits)."""
    for task in GROUPS:
        for index, pair in enumerate(_DEMO[task]):
            key = content_hash(["gedit-demo", task, index], 32)
            buf = io.BytesIO()
            draw_demo_image(task, index).save(buf, format="PNG")
            for language, text in zip(LANGUAGES, pair, strict=True):
                yield Case(task, key, text, language, index == 0), buf.getvalue()


def demo_case_set() -> CaseSet:
    """The built-in demo set (44 rows), drawn once into the cache."""
    dest = cache_dir() / "gedit" / f"demo-v{DEMO_VERSION}"
    if not (dest / ".complete").is_file():
        materialize(dest, demo_rows(), {"files": {}})
    case_set = cached_case_set(dest, {"origin": "drawn", "version": DEMO_VERSION})
    case_set.name, case_set.label = "demo", "GEdit-demo"
    return case_set

