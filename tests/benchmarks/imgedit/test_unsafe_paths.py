"""ImgEdit case keys and source ids from a custom `--cases FILE.json` never reach outside their folders.

A key becomes the file name `images/<key>.png` (written by `harness run imgedit`, read by `harness score
imgedit`), an id a path under the source root: each goes through the one validator, and a bad one is a
one-line error naming the case file and the key before anything is written or read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType

import pytest

from harness.cli import main
from harness.store import Store

KEY = "sk-test-loopback"


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, list[str]]:
    """Source images, a rubric file and the common options of a custom-case run; ``tmp_path/work`` is the cwd."""
    from harness.benchmarks.imgedit.data import demo_rubric, draw_demo_image

    src = tmp_path / "src"
    src.mkdir()
    draw_demo_image("add", 0).save(src / "a.png")
    (tmp_path / "rubrics.json").write_text(json.dumps({"add": demo_rubric("add")}))
    (tmp_path / "work").mkdir()
    opts = ["--source-root", str(src), "--rubrics", str(tmp_path / "rubrics.json"), "--threads", "1", "--no-progress",
            "--store", str(tmp_path / "h.db")]
    return tmp_path, opts


def write_cases(path: Path, key: str, source: str = "a.png") -> Path:
    path.write_text(json.dumps({key: {"id": source, "prompt": "Add a small yellow star.", "edit_type": "add"}}))
    return path


def one_line_error(capsys: pytest.CaptureFixture, rc: int) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("key", ["../../x", "a/../../b", "ABSOLUTE"])
def test_run_refuses_a_case_key_that_is_not_a_plain_name(key, workspace, capsys, monkeypatch) -> None:
    tmp, opts = workspace
    victim = tmp / "work" / "x.png"  # where `images/../../x.png` of the run folder work/run lands
    victim.write_bytes(b"victim")
    if key == "ABSOLUTE":
        key = str(tmp / "abs")
    cases = write_cases(tmp / "cases.json", key)
    before = files(tmp)
    monkeypatch.chdir(tmp / "work")
    err = one_line_error(capsys, main(["run", "imgedit", "--model", "tiny", "--cases", str(cases), "--no-score",
                                       "--out", "run", *opts]))
    assert f"{cases}: case key {key!r}" in err
    assert victim.read_bytes() == b"victim"
    after = files(tmp)
    assert {k: v for k, v in after.items() if k != "h.db"} == {k: v for k, v in before.items() if k != "h.db"}
    assert not (tmp / "work" / "run").exists()


def test_score_never_reads_an_image_named_by_an_absolute_key(workspace, peer: ModuleType, capsys,
                                                             monkeypatch) -> None:
    from PIL import Image

    tmp, opts = workspace
    outside = tmp / "private"
    Image.new("RGB", (96, 64), (1, 2, 3)).save(tmp / "private.png")  # `<key>.png` of the absolute key
    cases = write_cases(tmp / "cases.json", str(outside))
    images = tmp / "work" / "edited"
    images.mkdir()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with peer.serve(api_key=KEY) as srv:
        rc = main(["score", "imgedit", "--images", str(images), "--cases", str(cases), "--missing", "count",
                   "--judge-base-url", srv.url, "--judge-cache", str(tmp / "c.sqlite"), *opts])
        sent = srv.state.requests["/v1/chat/completions"]
    err = one_line_error(capsys, rc)
    assert f"{cases}: case key {str(outside)!r}" in err
    assert sent == 0 and not (images / "summary.json").exists()


def test_a_source_image_that_links_outside_the_source_root_is_refused(workspace, capsys, monkeypatch) -> None:
    tmp, opts = workspace
    (tmp / "secret.png").write_bytes((tmp / "src" / "a.png").read_bytes())
    (tmp / "src" / "link.png").symlink_to(tmp / "secret.png")
    cases = write_cases(tmp / "cases.json", "1", source="link.png")
    monkeypatch.chdir(tmp / "work")
    err = one_line_error(capsys, main(["run", "imgedit", "--model", "tiny", "--cases", str(cases), "--no-score",
                                       "--out", "run", *opts]))
    assert "link.png" in err and "outside" in err
    assert not (tmp / "work" / "run" / "images").exists()


@pytest.mark.parametrize("source", ["../a.png", "/etc/passwd", "sub/../../a.png"])
def test_a_source_id_that_leaves_the_root_is_refused(source, workspace, capsys, monkeypatch) -> None:
    tmp, opts = workspace
    cases = write_cases(tmp / "cases.json", "1", source=source)
    monkeypatch.chdir(tmp / "work")
    err = one_line_error(capsys, main(["run", "imgedit", "--model", "tiny", "--cases", str(cases), "--no-score",
                                       "--out", "run", *opts]))
    assert f"{cases}: case '1'" in err and repr(source) in err


def test_official_case_files_pass_the_validator(imgedit_data: Path) -> None:
    from harness.benchmarks.imgedit.data import load_json, parse_cases, parse_rubrics

    rubrics = parse_rubrics(load_json(imgedit_data / "prompts.json", "prompts.json"), imgedit_data / "prompts.json")
    for name, renamed in (("basic_edit.json", {}), ("basic_edit.pre-2025-06-16.json", {"alter": "adjust"})):
        cases = parse_cases(load_json(imgedit_data / name, name), imgedit_data / name, rubrics, renamed)
        assert len(cases) == 737


def test_failed_rescoring_elsewhere_leaves_the_run_row(peer: ModuleType, tmp_path, capsys, monkeypatch) -> None:
    """`harness score imgedit --images RUN/images --out OTHER` that fails: the run's row and report are intact."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    store = ["--store", "h.db", "--no-progress", "--judge-cache", "c.sqlite"]
    with peer.serve(api_key=KEY) as srv:
        judge = ["--judge-base-url", srv.url, "--cases", "demo", "--types", "add", "--limit", "1"]
        assert main(["run", "imgedit", "--model", "tiny", "--threads", "1", "--out", "run", *judge, *store]) == 0
        run_id = json.loads(Path("run/summary.json").read_text())["run_id"]
        with Store("h.db") as db:
            before = db.runs().set_index("run_id").loc[run_id].drop("updated_at").tolist()
        capsys.readouterr()
        one_line_error(capsys, main(["score", "imgedit", "--images", "run/images", "--out", "other",
                                     "--clip-metrics", "no-such-clip", *judge, *store]))
        with Store("h.db") as db:
            assert db.runs().set_index("run_id").loc[run_id].drop("updated_at").tolist() == before
        assert main(["report", run_id, "--out", "rep", "--store", "h.db"]) == 0
        assert main(["score", "imgedit", "--images", "run/images", "--out", "other", *judge, *store]) == 0
    job = json.loads(Path("other/summary.json").read_text())["run_id"]
    assert job != run_id
    with Store("h.db") as db:
        runs = db.runs().set_index("run_id")
        assert runs.loc[run_id].drop("updated_at").tolist() == before
        assert runs.loc[job, "out_dir"] == "other" and runs.loc[job, "status"] == "finished"
    assert main(["report", job, "--out", "rep2", "--store", "h.db"]) == 0
    assert os.path.isfile("rep2/index.html")
