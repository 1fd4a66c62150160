"""Case and rubric loading (official files from ../shared/data, read in place), versions, images, demo set."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from harness.benchmarks.imgedit import data
from harness.benchmarks.imgedit.data import check_sources, demo_case_set, load_case_set
from harness.core.errors import HarnessError


def _images_for(cases: list, root: Path) -> None:
    """Tiny stand-in source images at the cases' ids (the real ones are in Benchmark.tar)."""
    from PIL import Image

    for case in cases:
        path = root / case.source
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 6), (len(case.source) * 5 % 255, 0, 0)).save(path, format="JPEG")


def test_official_current_cases_and_rubrics(imgedit_data: Path, tmp_path: Path) -> None:
    cs = load_case_set("official", data_dir=str(imgedit_data), source_root=str(tmp_path))
    assert len(cs.cases) == 737 and cs.label == "ImgEdit-Basic"
    counts: dict[str, int] = {}
    for c in cs.cases:
        counts[c.edit_type] = counts.get(c.edit_type, 0) + 1
    assert counts == {"extract": 117, "style": 100, "add": 95, "adjust": 94, "background": 94, "replace": 92,
                      "remove": 86, "action": 36, "compose": 23}
    assert len({c.source for c in cs.cases}) == 171
    assert cs.provenance["cases"]["sha256"].startswith("5ee9b7d6") and cs.provenance["rubrics"]["sha256"]
    assert cs.cases[0].key == "1082" and cs.source_path(cs.cases[0]) == tmp_path / "animal/000342021.jpg"
    sel = cs.select(["add", "remove"], 3)
    assert [c.edit_type for c in sel].count("add") == 3 and len(sel) == 6


def test_pre_june_file_scores_alter_with_the_adjust_rubric(imgedit_data: Path, tmp_path: Path) -> None:
    cs = load_case_set("official", version="pre-2025-06-16", data_dir=str(imgedit_data), source_root=str(tmp_path))
    alter = [c for c in cs.cases if c.original_type == "alter"]
    assert len(alter) == 94 and {c.edit_type for c in alter} == {"adjust"}
    assert cs.label == "ImgEdit-Basic (pre-2025-06-16)" and cs.provenance["cases"]["sha256"].startswith("1a0463aa")
    current = {c.key: c.prompt for c in load_case_set("official", data_dir=str(imgedit_data),
                                                        source_root=str(tmp_path)).cases}
    assert sum(current[c.key] != c.prompt for c in cs.cases) == 57  # docs/imgedit.md, 'Data files and versions'


def test_alter_in_a_current_style_file_is_one_line_error(imgedit_data: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    shutil.copy(imgedit_data / "basic_edit.pre-2025-06-16.json", old)
    with pytest.raises(HarnessError) as info:
        load_case_set(str(old), data_dir=str(imgedit_data), source_root=str(tmp_path))
    msg = str(info.value)
    assert "old.json: case" in msg and "edit_type 'alter' has no rubric" in msg
    assert "--case-version pre-2025-06-16" in msg
    assert "\n" not in msg


def test_rubric_or_case_file_with_other_sha256_is_refused(imgedit_data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "d"
    copy.mkdir()
    shutil.copy(imgedit_data / "basic_edit.json", copy)
    rubrics = json.loads((imgedit_data / "prompts.json").read_text())
    rubrics["add"] = rubrics["add"].replace("A number from 1 to 5", "A number from 1 to 10")
    (copy / "prompts.json").write_text(json.dumps(rubrics))
    with pytest.raises(HarnessError, match=r"prompts.json: sha256 mismatch .*expected f9468dc8"):
        load_case_set("official", data_dir=str(copy), source_root=str(tmp_path))
    shutil.copy(imgedit_data / "prompts.json", copy)
    with pytest.raises(HarnessError, match=r"--data-dir .*: no basic_edit.pre-2025-06-16.json there"):
        load_case_set("official", version="pre-2025-06-16", data_dir=str(copy), source_root=str(tmp_path))


@pytest.mark.parametrize(("item", "match"), [
    ({"id": "a.jpg", "prompt": "x"}, "field 'edit_type' missing"),
    ({"id": "../a.jpg", "prompt": "x", "edit_type": "add"}, "must be a path relative"),
    ({"id": "a.jpg", "prompt": "x", "edit_type": "recolor"}, "edit_type 'recolor' has no rubric"),
])
def test_custom_case_file_is_validated(imgedit_data: Path, tmp_path: Path, item: dict, match: str) -> None:
    path = tmp_path / "cases.json"
    path.write_text(json.dumps({"7": item}))
    with pytest.raises(HarnessError, match=match):
        load_case_set(str(path), data_dir=str(imgedit_data), source_root=str(tmp_path))


def test_missing_source_images_are_listed(imgedit_data: Path, tmp_path: Path) -> None:
    cs = load_case_set("official", data_dir=str(imgedit_data), source_root=str(tmp_path))
    sel = cs.select(["compose"], None)
    _images_for(sel[1:], tmp_path)
    with pytest.raises(HarnessError, match=r"1 source image\(s\) missing \(e.g. compose/"):
        check_sources(cs, sel)
    _images_for(sel, tmp_path)
    assert len(check_sources(cs, sel)) == 23


def test_benchmark_tar_is_extracted_once_and_used(imgedit_data: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The huggingface_hub path with the download replaced by a local tar (the hub is unreachable here)."""
    cs = load_case_set("official", data_dir=str(imgedit_data), source_root=str(tmp_path))
    staging = tmp_path / "staging" / "Benchmark" / "singleturn"
    _images_for(cs.cases, staging)
    tar_path = tmp_path / "Benchmark.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(tmp_path / "staging" / "Benchmark", arcname="Benchmark")
    calls = []

    def fake_download(repo_id: str, filename: str, **kw: object) -> str:
        calls.append((repo_id, filename, kw.get("repo_type")))
        return str(tar_path)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    root, prov = data.resolve_source_root(None, None)
    assert calls == [("sysuyy/ImgEdit", "Benchmark.tar", "dataset")]
    assert prov["tar_sha256"] == data.sha256_file(tar_path) and (root / "daily object").is_dir()
    cs.source_root = root
    assert len(check_sources(cs, cs.cases)) == 171
    marker = root.parents[1] / ".complete"
    stamp = marker.stat().st_mtime_ns
    again, _ = data.resolve_source_root(None, None)  # second call: no second extraction
    assert again == root and marker.stat().st_mtime_ns == stamp


def test_offline_without_images_is_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def offline(*a: object, **k: object) -> str:
        raise OSError("offline mode is enabled")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(HarnessError, match=r"could not download Benchmark.tar .* pass --source-root DIR"):
        data.resolve_source_root(None, None)


def test_demo_set_is_deterministic_and_covers_every_type() -> None:
    from PIL import Image

    cs = demo_case_set()
    assert len(cs.cases) == 18 and {c.edit_type for c in cs.cases} == set(data.DEMO_LABELS)
    shas = check_sources(cs, cs.cases)
    buf = io.BytesIO()
    data.draw_demo_image("add", 0).save(buf, format="PNG")
    assert data.sha256_file(cs.source_path(cs.cases[0])) == __import__("hashlib").sha256(buf.getvalue()).hexdigest()
    assert len(set(shas.values())) == 18
    with Image.open(cs.source_path(cs.cases[1])) as im:
        assert im.size == data.DEMO_SIZES[1]
