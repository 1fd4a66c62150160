"""Plugin registry: entry points from a real (throw-away) installed distribution."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import registry as reg
from harness.core.errors import PluginLoadError, UnknownNameError


def make_distribution(root: Path, name: str, version: str, entry_points: dict[str, dict[str, str]],
                      modules: dict[str, str]) -> Path:
    """Install a distribution the way pip leaves it on disk: modules plus a .dist-info folder."""
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source)
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


PLUGIN_SOURCE = '''
from harness.api import ImageModel


class EchoModel(ImageModel):
    name = "echo"
    capabilities = frozenset({"generate"})


class NotAModel:
    name = "impostor"
'''


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    site = make_distribution(
        tmp_path / "site", "harness-echo-plugin", "1.2.3",
        {"harness.models": {"echo": "echo_plugin:EchoModel", "tiny": "echo_plugin:EchoModel",
                            "broken": "missing_module_xyz:Thing", "malformed": "not a target",
                            "impostor": "echo_plugin:NotAModel"},
         "harness.judges": {"echo-judge": "echo_plugin:EchoModel"}},
        {"echo_plugin": PLUGIN_SOURCE},
    )
    monkeypatch.syspath_prepend(str(site))
    reg.refresh()
    yield site
    reg.refresh()


def test_plugin_is_discovered_loaded_and_has_provenance(plugin_site):
    models = reg.registry("models")
    assert "echo" in models.names()
    cls = models.load("echo")
    assert cls.name == "echo"
    prov = models.entry("echo").provenance()
    assert prov == {"name": "echo", "group": "models", "target": "echo_plugin:EchoModel",
                    "distribution": "harness-echo-plugin", "version": "1.2.3", "builtin": False}
    assert "echo-judge" in reg.registry("judges").names()


def test_builtin_wins_name_clash_with_warning_naming_both(plugin_site, caplog):
    reg.refresh()
    with caplog.at_level(logging.WARNING, logger="harness.registry"):
        entry = reg.registry("models").entry("tiny")
    assert entry.builtin and entry.distribution == "dreamlite-harness"
    clash = [r.getMessage() for r in caplog.records if "clash" in r.getMessage()]
    assert clash and "harness-echo-plugin" in clash[0] and "dreamlite-harness" in clash[0]


def test_broken_plugin_fails_alone(plugin_site):
    models = reg.registry("models")
    with pytest.raises(PluginLoadError, match=r"broken.*harness-echo-plugin 1\.2\.3.*missing_module_xyz"):
        models.load("broken")
    assert models.load("echo").name == "echo"  # the rest still works


def test_entry_of_the_wrong_kind_is_refused_alone(plugin_site):
    models = reg.registry("models")
    with pytest.raises(PluginLoadError, match=r"impostor.*harness-echo-plugin 1\.2\.3.*not a harness\.api\.model\."
                                              r"ImageModel subclass"):
        models.load("impostor")
    assert models.load("echo").name == "echo"


def test_builtins_are_the_projects_own_entry_points():
    from importlib import metadata

    own = {ep.name for ep in metadata.entry_points(group="harness.benchmarks") if ep.dist.name == "dreamlite-harness"}
    entries = {e.name: e for e in reg.registry("benchmarks").entries()}
    assert own <= set(entries) and {"geneval", "imgedit", "device"} <= own
    assert all(entries[name].builtin and entries[name].distribution == "dreamlite-harness" for name in own)


def test_malformed_entry_point_is_skipped_with_warning(plugin_site, caplog):
    reg.refresh()
    with caplog.at_level(logging.WARNING, logger="harness.registry"):
        names = reg.registry("models").names()
    assert "malformed" not in names
    assert any("malformed" in r.getMessage() and "module:attr" in r.getMessage() for r in caplog.records)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownNameError) as info:
        reg.registry("models").entry("dreamlite-mobil")
    msg = str(info.value)
    assert "unknown model 'dreamlite-mobil'" in msg and "Did you mean 'dreamlite-mobile'" in msg
    assert "\n" not in msg


def test_unknown_group():
    with pytest.raises(UnknownNameError, match="Did you mean 'models'"):
        reg.registry("modls")


def test_cli_lists_plugin_and_checks_imports(plugin_site):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), *sys.path])}
    out = subprocess.run([sys.executable, "-m", "harness", "list", "models", "--check"], capture_output=True,
                         text=True, env=env)
    assert "echo" in out.stdout and "plugin from harness-echo-plugin 1.2.3" in out.stdout
    assert "broken" in out.stdout and "FAILED" in out.stdout
    assert out.returncode == 1  # --check reports the broken plugin


def test_help_and_list_do_not_import_torch():
    code = ("import sys; from harness.cli import main\n"
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['list', 'models']); main(['list', 'detectors'])\n"
            "print(json.dumps(sorted(m for m in ('torch', 'diffusers', 'transformers', 'numpy') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    help_out = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, check=True)
    assert "run" in help_out.stdout and "score" in help_out.stdout
