"""DPG-Bench data: the 1,065 dense prompts and the question CSV at the pinned ELLA commit, verified by git ids.

The upstream files have no published sha256, so they are checked the way git names them: the CSV by its git
blob id (``sha1(b"blob <len>\\0" + bytes)``) and the prompt folder by its git tree id (docs/dpg.md, "Data").
Downloads go to ``$HARNESS_CACHE/dpg/<commit>/`` and are checked again on every load; ``--data-dir`` names
a local copy of the official ``dpg_bench`` folder (``dpg_bench.csv`` and ``prompts/``), checked the same way.
A custom set is any folder of that layout (recorded by its ids, labelled ``custom``), and ``demo`` is a small
built-in set written by this project in the official schema.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.api.benchmark import select_by_subset
from harness.core.datafiles import cache_dir
from harness.core.errors import HarnessError
from harness.core.fsio import atomic_write_bytes, listing
from harness.core.hashing import content_hash, sha256_bytes
from harness.core.paths import inside, safe_name

UPSTREAM_COMMIT = "3c228f1dc6c4d3cad0a47493816151a419f14db3"
CSV_NAME = "dpg_bench.csv"
PROMPTS_DIR = "prompts"
COLUMNS = ("item_id", "text", "keywords", "proposition_id", "dependency", "category_broad", "category_detailed",
           "tuple", "question_natural_language")
#: the columns the official scorer reads
REQUIRED = ("item_id", "proposition_id", "dependency", "tuple", "question_natural_language")


@dataclass(frozen=True)
class Pins:
    """Where the official data is and what it must hash to."""

    base_url: str
    csv_blob: str
    prompts_tree: str
    prompts: int


OFFICIAL = Pins(base_url=f"https://raw.githubusercontent.com/TencentQQGYLab/ELLA/{UPSTREAM_COMMIT}/dpg_bench/",
                csv_blob="98457fc9901943f51ff9a30367250fc292533bed",
                prompts_tree="ac3ba27bf2e1c3ec189fe2e00681f75f4b78d683", prompts=1065)
DATA_DIR_FIX = (f"pass --data-dir FOLDER holding {CSV_NAME} and {PROMPTS_DIR}/ (the dpg_bench folder of "
                f"TencentQQGYLab/ELLA at {UPSTREAM_COMMIT[:7]})")


# -- git object ids ----------------------------------------------------------------------------------------------
def git_blob_id(data: bytes) -> str:
    """The id git gives a file's content: ``sha1(b"blob <len>\\0" + data)``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def git_tree_id(blobs: Mapping[str, str]) -> str:
    """The id git gives a folder of plain files (mode 100644), from each file name's blob id."""
    body = b"".join(b"100644 " + name.encode() + b"\0" + bytes.fromhex(blob)
                    for name, blob in sorted(blobs.items(), key=lambda kv: kv[0].encode()))
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


# -- the parsed data ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    """One CSV row: its data-row index (0 = the first row under the header), item, id, parents, tuple, text."""

    row: int
    item_id: str
    qid: int
    parents: tuple[int, ...]
    tuple: str
    question: str

    def as_list(self) -> list[Any]:
        return [self.row, self.item_id, self.qid, list(self.parents), self.tuple, self.question]

    @classmethod
    def from_list(cls, value: Any, where: str) -> Question:
        try:
            row, item, qid, parents, tup, question = value
            return cls(int(row), str(item), int(qid), tuple(int(p) for p in parents), str(tup), str(question))
        except (TypeError, ValueError):
            raise HarnessError(f"{where}: malformed question row {value!r}; rerun `harness run dpg`") from None


@dataclass(frozen=True)
class Prompt:
    """One prompt: its id (the image file stem), its text (stripped), and its questions in CSV order."""

    id: str
    text: str
    questions: tuple[Question, ...]

    @property
    def family(self) -> str:
        """The upstream source of the prompt: its id without the trailing number (``partiprompts97`` →
        ``partiprompts``; the plain numbers are ``numbered``)."""
        return re.sub(r"\d+$", "", self.id) or "numbered"

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.text.encode("utf-8"))

    def asked(self) -> tuple[str, ...]:
        """The distinct question texts, in CSV order: what the VQA model is asked about each image."""
        return tuple(dict.fromkeys(q.question for q in self.questions))


@dataclass(frozen=True)
class PromptSet:
    """A loaded prompt set and where it came from."""

    name: str  # "official", "demo" or "custom"
    source: str
    csv_blob: str
    csv_sha256: str
    prompts_tree: str
    prompts: tuple[Prompt, ...]
    #: data problems that do not stop a run (e.g. an item's rows not contiguous), as sentences
    warnings: tuple[str, ...] = ()

    def select(self, families: Sequence[str] | None = None, limit: int | None = None) -> list[Prompt]:
        """The prompts of the given families (all if None), at most ``limit`` per family, in CSV order."""
        return select_by_subset(self.prompts, lambda p: p.family, families, limit, flag="--families",
                                subset_noun="family")

    def provenance(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "csv_blob": self.csv_blob, "csv_sha256": self.csv_sha256,
                "prompts_tree": self.prompts_tree, "prompt_text": "stripped of leading and trailing whitespace"}


def parse_csv(data: bytes, source: str) -> list[Question]:
    """The rows of a question CSV in the official schema; errors name the file, the row and the field."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HarnessError(f"{source}: not UTF-8 text; save the question CSV as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise HarnessError(f"{source}: missing column(s) {', '.join(missing)}; the header must name "
                           f"{', '.join(COLUMNS)}")
    rows = []
    for i, line in enumerate(reader):
        where = f"{source} data row {i} (line {reader.line_num})"
        values = {c: (line.get(c) or "").strip() for c in REQUIRED}
        empty = [c for c, v in values.items() if not v]
        if empty:
            raise HarnessError(f"{where}: empty {', '.join(empty)}; every question row needs them")
        try:
            qid = int(values["proposition_id"])
        except ValueError:
            raise HarnessError(f"{where}: proposition_id {values['proposition_id']!r} is not an integer") from None
        try:
            parents = tuple(int(d.strip()) for d in values["dependency"].split(","))
        except ValueError:
            raise HarnessError(f"{where}: dependency {values['dependency']!r} is not comma-separated integers "
                               "(0 = no parent)") from None
        item = values["item_id"]
        check_item_id(item, where)
        rows.append(Question(i, item, qid, parents, str(line["tuple"]), str(line["question_natural_language"])))
    if not rows:
        raise HarnessError(f"{source}: no question rows")
    return rows


def check_item_id(item: str, where: str) -> str:
    """An item id is an image file stem: a safe file name without a dot (the scorer keys a file by the text
    before its first dot)."""
    safe_name(item, what="item_id", where=where)
    if "." in item:
        raise HarnessError(f"{where}: item_id {item!r} contains a dot; the official scorer keys an image by the "
                           "file name up to its first dot, so ids must not have one")
    return item


def build_set(name: str, source: str, csv_data: bytes, prompt_files: Mapping[str, bytes]) -> PromptSet:
    """A prompt set from the CSV bytes and the prompt files (``<id>.txt`` → bytes); ids must match."""
    rows = parse_csv(csv_data, f"{source}/{CSV_NAME}")
    by_item: dict[str, list[Question]] = {}
    for row in rows:
        by_item.setdefault(row.item_id, []).append(row)
    stems = {n[:-4]: data for n, data in prompt_files.items() if n.endswith(".txt")}
    only_csv, only_txt = sorted(set(by_item) - set(stems)), sorted(set(stems) - set(by_item))
    if only_csv or only_txt:
        parts = ([f"{len(only_csv)} item(s) without a prompt file ({listing(only_csv, 5)})"] if only_csv else []) + (
            [f"{len(only_txt)} prompt file(s) without questions ({listing(only_txt, 5)})"] if only_txt else [])
        raise HarnessError(f"{source}: the CSV's item ids and the prompt files differ: {'; '.join(parts)}")
    prompts = []
    for item, questions in by_item.items():
        try:
            text = stems[item].decode("utf-8").strip()
        except UnicodeDecodeError:
            raise HarnessError(f"{source}/{PROMPTS_DIR}/{item}.txt: not UTF-8 text") from None
        if not text:
            raise HarnessError(f"{source}/{PROMPTS_DIR}/{item}.txt: empty prompt")
        prompts.append(Prompt(item, text, tuple(questions)))
    blobs = {n: git_blob_id(d) for n, d in prompt_files.items()}
    return PromptSet(name, source, git_blob_id(csv_data), sha256_bytes(csv_data), git_tree_id(blobs),
                     tuple(prompts), tuple(noncontiguous(rows)))


def noncontiguous(rows: Iterable[Question]) -> list[str]:
    """Items whose rows are not one block (the official scorer keeps only the last block of such an item)."""
    seen: set[str] = set()
    split = []
    previous = None
    for row in rows:
        if row.item_id != previous and row.item_id in seen:
            split.append(row.item_id)
        seen.add(row.item_id)
        previous = row.item_id
    return [f"item {item}: rows are not contiguous (the official scorer keeps only its last block)"
            for item in dict.fromkeys(split)]


# -- loading -----------------------------------------------------------------------------------------------------
def load_prompt_set(prompts: str = "official", data_dir: str | None = None, pins: Pins = OFFICIAL) -> PromptSet:
    """``official`` (``data_dir``, the cache, or a download; verified by git ids), ``demo``, or a folder."""
    if prompts == "demo":
        from harness.benchmarks.dpg.demo import demo_files

        csv_data, files = demo_files()
        return build_set("demo", "built-in demo prompts", csv_data, files)
    if prompts != "official":
        folder = Path(prompts)
        if not (folder / CSV_NAME).is_file():
            raise HarnessError(f"--prompts {prompts}: no {CSV_NAME} there; use 'official', 'demo' or a folder "
                               f"holding {CSV_NAME} and {PROMPTS_DIR}/")
        found = build_set("custom", str(folder), *read_folder(folder))
        official = (found.csv_blob, found.prompts_tree) == (pins.csv_blob, pins.prompts_tree)
        return replace(found, name="official") if official else found
    if data_dir is not None:
        folder = Path(data_dir)
        if not (folder / CSV_NAME).is_file():
            raise HarnessError(f"--data-dir {data_dir}: no {CSV_NAME} there; {DATA_DIR_FIX}")
        return verified(build_set("official", str(folder), *read_folder(folder)), pins, f"--data-dir {data_dir}")
    cached = cache_dir() / "dpg" / UPSTREAM_COMMIT[:12]
    if (cached / CSV_NAME).is_file():
        return verified(build_set("official", str(cached), *read_folder(cached)), pins,
                        f"the cached copy in {cached} (delete it to download again)")
    download(pins, cached)
    return verified(build_set("official", str(cached), *read_folder(cached)), pins, f"the download into {cached}")


def read_folder(folder: Path) -> tuple[bytes, dict[str, bytes]]:
    """The CSV's bytes and every ``prompts/*.txt`` file's bytes by name (files inside the folder only)."""
    prompts = folder / PROMPTS_DIR
    if not prompts.is_dir():
        raise HarnessError(f"{folder}: no {PROMPTS_DIR}/ folder next to {CSV_NAME}")
    files = {}
    for path in sorted(prompts.iterdir()):
        if path.suffix == ".txt":
            files[path.name] = inside(prompts, path.name, what="prompt file").read_bytes()
    return inside(folder, CSV_NAME, what="question CSV").read_bytes(), files


def verified(found: PromptSet, pins: Pins, what: str) -> PromptSet:
    """The official set, or one error naming the id that differs (the CSV's blob, the prompt folder's tree)."""
    if found.csv_blob != pins.csv_blob:
        raise HarnessError(f"{found.source}/{CSV_NAME}: git blob id mismatch for {what}: expected {pins.csv_blob}, "
                           f"got {found.csv_blob}; re-download it, or {DATA_DIR_FIX}")
    if found.prompts_tree != pins.prompts_tree:
        raise HarnessError(f"{found.source}/{PROMPTS_DIR}: git tree id mismatch for {what}: expected "
                           f"{pins.prompts_tree}, got {found.prompts_tree} ({len(found.prompts)} prompts, "
                           f"{pins.prompts} expected); re-download it, or {DATA_DIR_FIX}")
    return found


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise HarnessError(f"could not download {url} ({exc}); offline, {DATA_DIR_FIX}") from None


def download(pins: Pins, folder: Path) -> None:
    """Fetch the CSV and every prompt file it names; keep them (each written atomically, the CSV last) only
    when the CSV's blob id and the prompt folder's tree id are the pinned ones."""
    csv_data = _get(pins.base_url + CSV_NAME)
    if git_blob_id(csv_data) != pins.csv_blob:
        raise HarnessError(f"{pins.base_url}{CSV_NAME}: git blob id mismatch for the download: expected "
                           f"{pins.csv_blob}, got {git_blob_id(csv_data)}; {DATA_DIR_FIX}")
    ids = list(dict.fromkeys(q.item_id for q in parse_csv(csv_data, pins.base_url + CSV_NAME)))
    with ThreadPoolExecutor(max_workers=16) as pool:
        texts = dict(zip(ids, pool.map(lambda i: _get(f"{pins.base_url}{PROMPTS_DIR}/{i}.txt"), ids), strict=True))
    tree = git_tree_id({f"{i}.txt": git_blob_id(data) for i, data in texts.items()})
    if tree != pins.prompts_tree:
        raise HarnessError(f"{pins.base_url}{PROMPTS_DIR}/: git tree id mismatch for the download of the "
                           f"{len(ids)} prompts the CSV names: expected {pins.prompts_tree}, got {tree}; "
                           f"{DATA_DIR_FIX}")
    for item, data in texts.items():
        atomic_write_bytes(folder / PROMPTS_DIR / f"{item}.txt", data, fsync=False)
    atomic_write_bytes(folder / CSV_NAME, csv_data)


def prompt_set_id(found: PromptSet, ids: Sequence[str]) -> str:
    """What identifies a selection for comparisons: the CSV, the prompt folder and the selected ids."""
    return content_hash([found.csv_sha256, found.prompts_tree, list(ids)], 64)
