"""Prompt data: official file (download + sha256 + cache, or local copy), demo set, custom sets, bad input."""

from __future__ import annotations

import http.server
import json
import threading
from collections import Counter
from functools import partial

import pytest

from harness.benchmarks.geneval import prompts as P
from harness.benchmarks.geneval.classes import CLASS_NAMES
from harness.core.datafiles import DataFile, fetch
from harness.core.errors import HarnessError


def test_class_names_match_official_object_names(shared_data):
    names = (shared_data / "geneval" / "object_names.txt").read_text().splitlines()
    assert tuple(names) == CLASS_NAMES


def test_official_local_copy_loads_and_validates(shared_data):
    ps = P.load_prompts("official", str(shared_data / "geneval" / "evaluation_metadata.jsonl"))
    assert ps.name == "official" and ps.sha256 == P.OFFICIAL_METADATA.sha256
    assert len(ps.items) == 553
    assert Counter(i.tag for i in ps.items) == P.OFFICIAL_COUNTS
    assert ps.items[179].folder == "00179" and ps.items[179].tag == "counting"
    gen = (shared_data / "geneval" / "generation_prompts.txt").read_text().splitlines()
    assert [i.prompt for i in ps.items] == gen


def test_select_tags_and_limit_keep_official_indices(shared_data):
    ps = P.load_prompts("official", str(shared_data / "geneval" / "evaluation_metadata.jsonl"))
    chosen = ps.select(["counting", "position"], limit=2)
    assert [i.index for i in chosen] == [179, 180, 353, 354]
    with pytest.raises(HarnessError, match="unknown tag"):
        ps.select(["colour"])


def test_demo_set_is_valid_and_covers_every_tag():
    ps = P.load_prompts("demo")
    assert Counter(i.tag for i in ps.items) == {t: 4 for t in P.OFFICIAL_COUNTS}
    assert ps.items[8].prompt == "a photo of two birds"
    assert ps.sha256 == P.load_prompts("demo").sha256


def test_sha_mismatch_names_file_and_fix(tmp_path, shared_data):
    bad = tmp_path / "evaluation_metadata.jsonl"
    bad.write_text((shared_data / "geneval" / "evaluation_metadata.jsonl").read_text().replace("bench", "bench "))
    with pytest.raises(HarnessError) as info:
        P.load_prompts("official", str(bad))
    msg = str(info.value)
    assert str(bad) in msg and "sha256 mismatch" in msg and "--metadata" in msg


def test_custom_prompt_file_errors_name_line_and_field(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a dog"})
                    + "\n" + json.dumps({"tag": "single_object", "include": [{"class": "mouse", "count": 1}],
                                         "prompt": "a mouse"}) + "\n")
    with pytest.raises(HarnessError, match=r"mine.jsonl line 2: include\[0\].class 'mouse'"):
        P.load_prompts(str(path))
    path.write_text('{"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a dog"}\n')
    ps = P.load_prompts(str(path))
    assert ps.name == "custom" and len(ps.items) == 1
    path.write_text("{not json\n")
    with pytest.raises(HarnessError, match="line 1: not valid JSON"):
        P.load_prompts(str(path))


@pytest.fixture
def http_server(tmp_path):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_checks_sha_and_caches(http_server, shared_data, monkeypatch, tmp_path_factory):
    root, base = http_server
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path_factory.mktemp("cache")))
    (root / "evaluation_metadata.jsonl").write_bytes(
        (shared_data / "geneval" / "evaluation_metadata.jsonl").read_bytes())
    data = DataFile("evaluation_metadata.jsonl", f"{base}/evaluation_metadata.jsonl", P.OFFICIAL_METADATA.sha256,
                    "--metadata")
    path = fetch(data)
    assert path.read_bytes() == (root / "evaluation_metadata.jsonl").read_bytes()
    (root / "evaluation_metadata.jsonl").unlink()  # now only the cache can answer
    assert fetch(data) == path

    tampered = DataFile("other.jsonl", f"{base}/other.jsonl", P.OFFICIAL_METADATA.sha256, "--metadata")
    (root / "other.jsonl").write_text("{}\n")
    with pytest.raises(HarnessError, match="sha256 mismatch"):
        fetch(tampered)
    assert not list(path.parent.parent.glob("*/other.jsonl"))  # nothing unverified is cached


def test_download_failure_says_how_to_work_offline(http_server, monkeypatch, tmp_path_factory):
    _, base = http_server
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path_factory.mktemp("cache")))
    data = DataFile("nope.jsonl", f"{base}/nope.jsonl", "0" * 64, "--metadata")
    with pytest.raises(HarnessError, match="offline, pass a local copy with --metadata PATH"):
        fetch(data)
