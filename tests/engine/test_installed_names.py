"""The wheel installs one top-level name, ``harness``: the repository's benchmarks/, device/ and reports/ folders
become harness.benchmarks, harness.device and harness.reports, so they neither shadow nor are shadowed by a
user's own ``benchmarks`` or ``reports`` package (asv's convention).

The wheel is built from this checkout and installed (without dependencies) into a fresh virtual environment
that sees this interpreter's packages; it is then run from a working directory holding a foreign
``benchmarks/`` and ``reports/`` package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: the installed copy only: a PYTHONPATH pointing at a checkout would win over it
CLEAN = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp / "dist"), str(ROOT)], check=True, capture_output=True, timeout=600)
    wheel = next((tmp / "dist").glob("dreamlite_harness-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True, timeout=300)
    python = tmp / "venv" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], check=True,
                          capture_output=True, text=True).stdout.strip()
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)  # what pip does for a pure-Python wheel
    # this interpreter's packages (torch, numpy, ...) after the venv's own: a plain path entry, so the
    # checkout's editable-install hook there is not run and the wheel's copy is the one imported
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "numpy").is_dir())
    Path(site, "zz_dependencies.pth").write_text(ours + "\n")
    return python, wheel


def test_wheel_holds_one_top_level_package(venv):
    _, wheel = venv
    with zipfile.ZipFile(wheel) as zf:
        tops = {name.split("/")[0] for name in zf.namelist() if not name.split("/")[0].endswith(".dist-info")}
        names = zf.namelist()
    assert tops == {"harness"}
    for module in ("harness/benchmarks/geneval/benchmark.py", "harness/benchmarks/imgedit/benchmark.py",
                   "harness/benchmarks/geneval/detectors/official/convert.py", "harness/device/report.py",
                   "harness/reports/html.py", "harness/scorers/openai_judge.py", "harness/engine/lifecycle.py"):
        assert module in names, module


def test_installed_harness_ignores_a_users_benchmarks_and_reports_packages(venv, tmp_path):
    python, _ = venv
    for name in ("benchmarks", "reports", "device"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"MARK = 'user {name}'\n")
    code = textwrap.dedent("""
        import json, benchmarks, reports, device
        import harness, harness.benchmarks.geneval.rules, harness.reports.html, harness.device.report
        from harness.registry import registry
        entries = {g: {e.name: e.target for e in registry(g).entries()} for g in ("benchmarks", "detectors")}
        for group in entries:
            for name in entries[group]:
                registry(group).load(name)
        print(json.dumps({"user": [benchmarks.MARK, reports.MARK, device.MARK],
                          "ours": [harness.benchmarks.geneval.rules.__file__, harness.reports.html.__file__],
                          "harness": harness.__file__, "entries": entries}))
    """)
    out = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=CLEAN)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["user"] == ["user benchmarks", "user reports", "user device"]
    assert all("site-packages" in path and str(ROOT) not in path for path in [*got["ours"], got["harness"]])
    assert got["entries"]["benchmarks"]["geneval"] == "harness.benchmarks.geneval.benchmark:GenEval"
    walk = textwrap.dedent("""
        import importlib, pkgutil, harness
        for info in pkgutil.walk_packages(harness.__path__, "harness."):
            try:
                importlib.import_module(info.name)
            except ModuleNotFoundError as exc:  # optional extras only (mmdet, modelscope): nothing of ours
                assert exc.name.split(".")[0] in ("mmdet", "mmcv", "mmengine", "modelscope"), (info.name, exc.name)
        print("ok")
    """)
    every = subprocess.run([str(python), "-c", walk], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                           env=CLEAN)
    assert every.returncode == 0 and every.stdout.strip().endswith("ok"), every.stderr[-2000:]
    listed = subprocess.run([str(python), "-m", "harness", "list", "benchmarks"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env=CLEAN)
    assert listed.returncode == 0 and "imgedit" in listed.stdout and "built-in" in listed.stdout


def test_no_module_imports_the_repository_folder_names():
    """``benchmarks``, ``device`` and ``reports`` exist only as ``harness.*`` once installed: an import of the bare
    name (even inside a function) would pick up a user's package of that name, or nothing."""
    import ast

    bad = []
    for folder in ("harness", "benchmarks", "device", "reports"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
                bad += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                        if n.split(".")[0] in ("benchmarks", "device", "reports")]
    assert bad == []
