"""DPG-Bench data: git ids as git computes them, the real download path against a loopback HTTP server, the
cache, ``--data-dir`` offline, and one-line errors for bad question files."""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.benchmarks.dpg import data
from harness.benchmarks.dpg.data import Pins, git_blob_id, git_tree_id, load_prompt_set, read_folder
from harness.benchmarks.dpg.demo import DEMO, demo_csv
from harness.core.errors import HarnessError

NAMES = ["partiprompts97.txt", "0.txt", "10.txt", "9.txt", "a-b.txt", "a.txt", "a0.txt", "B.txt", "café.txt"]


def test_blob_and_tree_ids_are_what_git_computes(tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git not installed")
    subprocess.run([git, "init", "-q", str(tmp_path / "repo")], check=True)
    lines = []
    for n, name in enumerate(NAMES):
        path = tmp_path / name
        path.write_bytes(f"A dense prompt number {n} — with ’ quotes\n".encode() * (n + 1))
        blob = subprocess.run([git, "hash-object", "-w", str(path)], cwd=tmp_path / "repo", check=True,
                              capture_output=True, text=True).stdout.strip()
        assert git_blob_id(path.read_bytes()) == blob
        lines.append(f"100644 blob {blob}\t{name}\n")
    tree = subprocess.run([git, "mktree"], cwd=tmp_path / "repo", input="".join(lines), check=True,
                          capture_output=True, text=True).stdout.strip()
    assert git_tree_id({name: git_blob_id((tmp_path / name).read_bytes()) for name in NAMES}) == tree


def upstream(root: Path) -> Pins:
    """An upstream folder ``root/dpg_bench`` (the demo set as files) and its pins (base URL filled in later)."""
    folder = root / "dpg_bench"
    (folder / "prompts").mkdir(parents=True)
    (folder / "dpg_bench.csv").write_bytes(demo_csv())
    for item, (text, _) in DEMO.items():
        (folder / "prompts" / f"{item}.txt").write_text(text + "\n", encoding="utf-8")
    csv_bytes, files = read_folder(folder)
    return Pins("", git_blob_id(csv_bytes), git_tree_id({n: git_blob_id(b) for n, b in files.items()}), len(files))


@contextmanager
def serve(root: Path) -> Iterator[tuple[str, Counter]]:
    """A static HTTP server for ``root`` on 127.0.0.1; yields its base URL and the paths requested."""
    seen: Counter = Counter()

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            seen[self.path] += 1
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "dpg" / data.UPSTREAM_COMMIT[:12]


def test_download_is_verified_cached_and_then_needs_no_network(tmp_path: Path, cache: Path) -> None:
    pins = upstream(tmp_path / "up")
    with serve(tmp_path / "up") as (url, seen):
        pins = Pins(f"{url}/dpg_bench/", pins.csv_blob, pins.prompts_tree, pins.prompts)
        found = load_prompt_set("official", pins=pins)
    assert found.name == "official" and [p.id for p in found.prompts] == list(DEMO)
    assert seen["/dpg_bench/dpg_bench.csv"] == 1 and seen["/dpg_bench/prompts/count0.txt"] == 1 and len(seen) == 7
    assert (cache / "dpg_bench.csv").read_bytes() == demo_csv()
    assert found.prompts[0].text == DEMO["dense0"][0]  # stripped: the file ends in a newline
    again = load_prompt_set("official", pins=pins)  # the server is gone: the cache answers, checked again
    assert again == found
    (cache / "prompts" / "text0.txt").write_text("tampered")
    with pytest.raises(HarnessError, match=r"git tree id mismatch for the cached copy in .* \(delete it to download"):
        load_prompt_set("official", pins=pins)


@pytest.mark.parametrize("tamper", ["csv", "prompt"])
def test_a_download_with_other_ids_is_refused_and_nothing_is_kept(tmp_path: Path, cache: Path, tamper: str) -> None:
    pins = upstream(tmp_path / "up")
    target = tmp_path / "up" / "dpg_bench" / ("dpg_bench.csv" if tamper == "csv" else "prompts/dense1.txt")
    target.write_bytes(target.read_bytes().replace(b"lighthouse", b"lighthouze"))
    with serve(tmp_path / "up") as (url, _):
        pins = Pins(f"{url}/dpg_bench/", pins.csv_blob, pins.prompts_tree, pins.prompts)
        kind = "blob" if tamper == "csv" else "tree"
        with pytest.raises(HarnessError, match=rf"git {kind} id mismatch for the download.*--data-dir") as err:
            load_prompt_set("official", pins=pins)
    assert "\n" not in str(err.value) and not cache.exists()


def test_data_dir_works_offline_and_is_checked(tmp_path: Path, cache: Path) -> None:
    pins = upstream(tmp_path / "up")
    offline = Pins("http://127.0.0.1:9/dpg_bench/", pins.csv_blob, pins.prompts_tree, pins.prompts)
    with pytest.raises(HarnessError, match=r"could not download http://127\.0\.0\.1:9/dpg_bench/dpg_bench\.csv .*"
                                           r"offline, pass --data-dir FOLDER"):
        load_prompt_set("official", pins=offline)
    found = load_prompt_set("official", str(tmp_path / "up" / "dpg_bench"), pins=offline)
    assert found.name == "official" and len(found.prompts) == len(DEMO) and not cache.exists()
    (tmp_path / "up" / "dpg_bench" / "prompts" / "extra.txt").write_text("another prompt")
    with pytest.raises(HarnessError, match="item ids and the prompt files differ: 1 prompt file"):
        load_prompt_set("official", str(tmp_path / "up" / "dpg_bench"), pins=offline)
    (tmp_path / "up" / "dpg_bench" / "prompts" / "extra.txt").unlink()
    (tmp_path / "up" / "dpg_bench" / "dpg_bench.csv").write_bytes(demo_csv() + b"\n")
    with pytest.raises(HarnessError, match=r"git blob id mismatch for --data-dir"):
        load_prompt_set("official", str(tmp_path / "up" / "dpg_bench"), pins=offline)
    custom = load_prompt_set(str(tmp_path / "up" / "dpg_bench"), pins=offline)
    assert custom.name == "custom" and custom.csv_blob != pins.csv_blob


HEADER = "item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple," \
         "question_natural_language\n"


@pytest.mark.parametrize(("body", "message"), [
    ("a,t,,x,0,e,w,entity - whole (a),Is there a?\n", "data row 0 (line 2): proposition_id 'x' is not an integer"),
    ("a,t,,1,0,e,w,entity - whole (a),Is there a?\na,t,,2,\"1;2\",e,w,e - w (a),Q?\n",
     "data row 1 (line 3): dependency '1;2' is not comma-separated integers"),
    ("a,t,,1,0,e,w,entity - whole (a),\n", "data row 0 (line 2): empty question_natural_language"),
    ("a.b,t,,1,0,e,w,entity - whole (a),Q?\n", "item_id 'a.b' contains a dot"),
    ("../a,t,,1,0,e,w,entity - whole (a),Q?\n", "item_id '../a' contains a path separator"),
])
def test_bad_question_rows_are_one_line_errors(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "a.txt").write_text("a prompt")
    (tmp_path / "dpg_bench.csv").write_text(HEADER + body)
    with pytest.raises(HarnessError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_prompt_set(str(tmp_path))


def test_missing_columns_and_split_items(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    for item in ("a", "b"):
        (tmp_path / "prompts" / f"{item}.txt").write_text(f"prompt {item}")
    (tmp_path / "dpg_bench.csv").write_text("item_id,proposition_id,dependency,tuple\na,1,0,e - w (a)\n")
    with pytest.raises(HarnessError, match="missing column.*question_natural_language"):
        load_prompt_set(str(tmp_path))
    rows = "a,t,,1,0,e,w,e - w (a),Qa1?\nb,t,,1,0,e,w,e - w (b),Qb?\na,t,,2,\"1,0\",e,w,e - w (a),Qa2?\n"
    (tmp_path / "dpg_bench.csv").write_text(HEADER + rows)
    found = load_prompt_set(str(tmp_path))
    assert found.warnings == ("item a: rows are not contiguous (the official scorer keeps only its last block)",)
    assert [q.parents for q in found.prompts[0].questions] == [(0,), (1, 0)]
    assert [p.family for p in found.prompts] == ["a", "b"]


def test_demo_set_is_the_official_schema_and_deterministic() -> None:
    demo = load_prompt_set("demo")
    assert demo == load_prompt_set("demo") and demo.name == "demo" and not demo.warnings
    assert [p.family for p in demo.prompts] == ["dense", "count", "text", "spatial", "dense", "count"]
    assert len(demo.select(["count"])) == 2 and len(demo.select(None, 1)) == 4
    l1 = {q.tuple.split("(")[0].split("-")[0].strip() for p in demo.prompts for q in p.questions}
    assert l1 == {"entity", "attribute", "relation", "global", "other"}
    with pytest.raises(HarnessError, match="--families: unknown family"):
        demo.select(["nope"])
