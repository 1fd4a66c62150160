"""GEdit data: the Hugging Face download at a pinned revision (against a loopback hub), ``--data-dir`` folders
(an exported folder; parquet and arrow shards when pyarrow is installed), the demo set, and bad rows."""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from harness.benchmarks.gedit.data import GROUPS, HF_DATASET, REVISION, demo_case_set, load_case_set
from harness.core.errors import HarnessError


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30), fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def dataset_rows() -> list[dict]:
    """Rows in the dataset's schema: two groups, both languages sharing keys, one source as JPEG."""
    rows = []
    for i, (task, key) in enumerate([("color_alter", "a" * 32), ("color_alter", "b" * 32), ("subject-add", "c" * 32)]):
        for lang, text in (("en", f"make it red {i}"), ("cn", f"变红 {i}")):
            rows.append({"task_type": task, "key": key, "instruction": text, "instruction_language": lang,
                         "Intersection_exist": i != 1, "input_image": f"images/{key}.{'jpg' if i == 2 else 'png'}"})
    return rows


def files_of(rows: list[dict]) -> dict[str, bytes]:
    files = {"metadata.jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()}
    for r in rows:
        name = r["input_image"]
        files[name] = png((hash(name) % 255, 80, 120), fmt="JPEG" if name.endswith(".jpg") else "PNG")
    return files


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_exported_folder_is_read_once_into_the_official_layout(tmp_path) -> None:
    from PIL import Image

    folder = write_folder(tmp_path / "export", files_of(dataset_rows()))
    cs = load_case_set("official", data_dir=str(folder))
    assert [c.id for c in cs.cases] == [f"{r['task_type']}/{r['instruction_language']}/{r['key']}"
                                        for r in dataset_rows()]
    assert cs.cases[2].intersection is False and cs.cases[0].intersection is True
    for case in cs.cases:
        path = cs.source_path(case)
        assert path.name == f"{case.key}_SRCIMG.png" and path.read_bytes()[:4] == b"\x89PNG"
    assert cs.source_path(cs.cases[0]).read_bytes() == (folder / "images" / ("a" * 32 + ".png")).read_bytes()
    with Image.open(cs.source_path(cs.cases[4])) as im:  # the JPEG source re-encoded as PNG, same pixels
        assert im.format == "PNG" and im.size == (40, 30)
    prov = cs.provenance
    assert prov["origin"] == "--data-dir" and prov["rows"] == 6 and len(prov["sha256"]) == 64
    assert prov["files"] == {"metadata.jsonl": hashlib.sha256((folder / "metadata.jsonl").read_bytes()).hexdigest()}
    again = load_case_set("official", data_dir=str(folder))  # the cache: same rows, same folder
    assert again.root == cs.root and again.cases == cs.cases
    selected = cs.select(("en",), ["color_alter"], 1)
    assert [c.id for c in selected] == [f"color_alter/en/{'a' * 32}"]
    assert len(cs.select(("en", "cn"), None, None)) == 6
    with pytest.raises(HarnessError, match="--types: unknown task type"):
        cs.select(("en",), ["colour"], None)


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r[0].pop("instruction"), "line 1: field 'instruction' missing or not text"),
    (lambda r: r[0].update(key="../../etc"), "key '../../etc' contains a path separator"),
    (lambda r: r[1].update(instruction_language="en"), "appears twice"),
    (lambda r: r[0].update(key="x_SRCIMG"), "reserves for source images"),
    (lambda r: r[0].update(input_image="../outside.png"), "component '..'"),
    (lambda r: r[0].update(input_image="images/none.png"), "input_image 'images/none.png' not found"),
])
def test_bad_rows_are_one_line_errors(tmp_path, change, message) -> None:
    rows = dataset_rows()
    files = files_of(rows)
    change(rows)
    files["metadata.jsonl"] = "".join(json.dumps(r) + "\n" for r in rows).encode()
    folder = write_folder(tmp_path / "bad", files)
    with pytest.raises(HarnessError, match=message) as err:
        load_case_set("official", data_dir=str(folder))
    assert "\n" not in str(err.value)


def test_a_folder_without_data_and_a_non_image_are_refused(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="no metadata.jsonl and no parquet/arrow files"):
        load_case_set("official", data_dir=str(tmp_path / "empty"))
    files = files_of(dataset_rows())
    files["images/" + "a" * 32 + ".png"] = b"not an image"
    with pytest.raises(HarnessError, match="input_image is not a readable image"):
        load_case_set("official", data_dir=str(write_folder(tmp_path / "junk", files)))
    with pytest.raises(HarnessError, match="--data-dir .*: no such folder"):
        load_case_set("official", data_dir=str(tmp_path / "missing"))


def test_demo_set_has_both_languages_under_one_key_per_edit() -> None:
    cs = demo_case_set()
    assert len(cs.cases) == 44 and {c.task_type for c in cs.cases} == set(GROUPS)
    en = [c for c in cs.cases if c.language == "en"]
    cn = [c for c in cs.cases if c.language == "cn"]
    assert [c.key for c in en] == [c.key for c in cn] and len({c.key for c in en}) == 22
    assert all(cs.source_path(c).is_file() for c in cs.cases)
    assert demo_case_set().provenance["sha256"] == cs.provenance["sha256"]


# -- the hub ------------------------------------------------------------------------------------------------
@contextmanager
def fake_hub(files: dict[str, bytes], commit: str) -> Iterator[tuple[str, list[str]]]:
    """A loopback Hugging Face hub serving one dataset repo at one commit (the API routes snapshot_download uses:
    revision info, the file tree, resolve)."""
    seen: list[str] = []
    repo = f"/api/datasets/{HF_DATASET}"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def send(self, code: int, body: bytes, headers: dict, head: bool) -> None:
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.route(head=True)

        def do_GET(self) -> None:
            self.route(head=False)

        def route(self, head: bool) -> None:
            path = self.path.split("?")[0]
            seen.append(f"{self.command} {path}")
            js = {"Content-Type": "application/json"}
            if path in (f"{repo}/revision/{commit}", f"{repo}/revision/main"):
                info = {"id": HF_DATASET, "sha": commit, "siblings": [{"rfilename": f} for f in files]}
                return self.send(200, json.dumps(info).encode(), js, head)
            if path == f"{repo}/tree/{commit}":
                tree = [{"type": "file", "path": f, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                        for f, d in files.items()]
                return self.send(200, json.dumps(tree).encode(), js, head)
            prefix = f"/datasets/{HF_DATASET}/resolve/{commit}/"
            if path.startswith(prefix) and path[len(prefix):] in files:
                data = files[path[len(prefix):]]
                return self.send(200, data, {"ETag": f'"{hashlib.sha1(data).hexdigest()}"', "X-Repo-Commit": commit,
                                             "Content-Type": "application/octet-stream"}, head)
            self.send(404, b'{"error": "Revision Not Found"}', {**js, "X-Error-Code": "RevisionNotFound"}, head)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_download_from_the_hub_at_the_pinned_revision_then_offline(tmp_path, run_harness) -> None:
    """`harness run gedit` downloads the dataset through huggingface_hub at the pinned revision, records the
    commit and every file's sha256, and later runs offline from the cache; an unknown revision is one line."""
    files = files_of(dataset_rows())
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1"}
    args = ["run", "gedit", "--model", "tiny", "--threads", "1", "--types", "color_alter", "--no-score",
            "--no-progress", "--store", "h.db"]
    with fake_hub(files, REVISION) as (url, seen):
        run_harness(*args, "--out", "online", cwd=tmp_path, env={**env, "HF_ENDPOINT": url})
        assert f"GET /datasets/{HF_DATASET}/resolve/{REVISION}/metadata.jsonl" in seen
        bad = run_harness(*args, "--out", "bad", "--revision", "0123456789abcdef0123456789abcdef01234567", cwd=tmp_path,
                          env={**env, "HF_ENDPOINT": url}, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert f"could not download the HF dataset {HF_DATASET} at revision 0123456789" in bad.stderr
    assert "--data-dir" in bad.stderr
    run = json.loads((tmp_path / "online" / "run.json").read_text())
    data = run["provenance"]["data"]
    assert data["revision"] == REVISION and data["resolved"] == REVISION and data["origin"].endswith(HF_DATASET)
    assert data["files"] == {"metadata.jsonl": hashlib.sha256(files["metadata.jsonl"]).hexdigest()}
    edits = sorted(p.relative_to(tmp_path / "online" / "images").as_posix()
                   for p in (tmp_path / "online" / "images").rglob("*.png"))
    assert edits == sorted(f"fullset/color_alter/en/{k * 32}{s}.png" for k in "ab" for s in ("", "_SRCIMG"))
    run_harness(*args, "--out", "offline", cwd=tmp_path, env={**env, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT":
                                                                 "http://127.0.0.1:9"})
    assert json.loads((tmp_path / "offline" / "run.json").read_text())["config"] == run["config"]


def test_parquet_and_arrow_shards_in_the_dataset_schema(tmp_path) -> None:
    """The hub's own files: image columns as {bytes, path} structs, the raw image column ignored."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = dataset_rows()
    files = files_of(rows)
    table = pa.table({
        "task_type": [r["task_type"] for r in rows], "key": [r["key"] for r in rows],
        "instruction": [r["instruction"] for r in rows],
        "instruction_language": [r["instruction_language"] for r in rows],
        "Intersection_exist": [r["Intersection_exist"] for r in rows],
        "input_image": [{"bytes": files[r["input_image"]], "path": None} for r in rows],
        "input_image_raw": [{"bytes": b"raw", "path": None} for r in rows],
    })
    (tmp_path / "pq" / "data").mkdir(parents=True)
    pq.write_table(table.slice(0, 3), tmp_path / "pq" / "data" / "train-00000-of-00002.parquet")
    pq.write_table(table.slice(3), tmp_path / "pq" / "data" / "train-00001-of-00002.parquet")
    (tmp_path / "arrow" / "train").mkdir(parents=True)
    with pa.OSFile(str(tmp_path / "arrow" / "train" / "data-00000-of-00001.arrow"), "wb") as sink, \
            pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    exported = load_case_set("official", data_dir=str(write_folder(tmp_path / "export", files)))
    for folder in ("pq", "arrow"):
        cs = load_case_set("official", data_dir=str(tmp_path / folder))
        assert cs.cases == exported.cases and cs.provenance["rows"] == 6
        assert all(cs.source_path(c).read_bytes() == exported.source_path(c).read_bytes() for c in cs.cases)
        assert len(cs.provenance["files"]) == (2 if folder == "pq" else 1)
