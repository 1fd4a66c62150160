"""Sweep files (TOML or YAML): variants × steps × resolutions × repeats → ordered jobs with stable ids.

A job id is the sha1 of what determines the measurement (variant, artifact sha256s, runner and version,
command template and args, steps, resolution, iterations, repeat index, device serial), so re-running the
same sweep finds its finished jobs. Each repeat is a round in which every configuration runs once, in a
seeded random order (``interleaved_random``) so thermal drift does not look like a variant effect.

A variant's ``command`` is a shell command line by design (the user's own); every ``{placeholder}`` put into
it (file names, ``args`` values such as prompts, seeds, sizes) becomes one quoted shell word. Names that
become path components (the sweep name, variant names, ``files`` names, ``outputs``) pass
:func:`harness.core.paths.safe_name`; ``[device]`` ``workdir``/``sysroot`` are quoted wherever they are used.
"""

from __future__ import annotations

import difflib
import hashlib
import random
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.errors import HarnessError
from harness.core.hashing import canonical_json
from harness.core.paths import safe_name
from harness.device.base import device_path_problem, q, sha256_file
from harness.device.errors import ConfigError
from harness.device.runners import RUNNERS, get_runner

TOP_KEYS = {"name", "steps", "resolutions", "repeats", "iters_per_process", "warmup_iters", "order", "seed",
            "image_seed", "job_timeout_s", "max_attempts", "poll_s", "sample_hz", "meminfo", "variants",
            "cooldown", "preconditions", "device"}
VARIANT_KEYS = {"name", "runner", "command", "generate", "files", "args", "outputs", "runtime", "backend", "precision",
                "threads", "memory_mode"}
#: placeholders of a ``generate`` template: one process for a batch (``{prompts}`` file) or one per image
GENERATE_BATCH = ("prompts", "outdir", "metrics_out", "steps", "width", "height")
GENERATE_PER_IMAGE = ("prompt", "seed", "output", "source", "key", "steps", "width", "height")
COOLDOWN_KEYS = {"sensor", "max_delta_c", "abs_max_c", "min_s", "max_s", "poll_s", "thermal_status_max"}
PRECONDITION_KEYS = {"min_battery", "screen", "charging"}
DEVICE_KEYS = {"backend", "host", "port", "serial", "usb", "key", "workdir", "sysroot", "adb_server_port"}
ORDERS = ("interleaved_random", "interleaved", "sequential")


@dataclass(frozen=True)
class Variant:
    """One thing to measure: a runner, a command template and the files it needs on the device."""

    name: str
    runner: str
    command: str
    files: tuple[tuple[str, str], ...] = ()
    args: tuple[tuple[str, Any], ...] = ()
    outputs: tuple[str, ...] = ()
    runtime: str | None = None
    backend: str | None = None
    precision: str | None = None
    threads: int | None = None
    memory_mode: int | None = None
    #: the image-generation command template (``harness run ... --model phone``), or None
    generate: str | None = None

    @property
    def generate_mode(self) -> str:
        """``"batch"`` (the template takes ``{prompts}``) or ``"per_image"`` (one process per image)."""
        return "batch" if self.generate and "prompts" in template_fields(self.generate) else "per_image"


@dataclass(frozen=True)
class Cooldown:
    """Temperature gate before each job: wait until cool, at least ``min_s``, at most ``max_s``."""

    sensor: str = "SKIN"
    max_delta_c: float = 2.0
    abs_max_c: float = 38.0
    min_s: float = 0.0
    max_s: float = 300.0
    poll_s: float = 5.0
    thermal_status_max: int = 0


@dataclass(frozen=True)
class Preconditions:
    """Checked before each job; a job whose device state fails them is recorded ``skipped``."""

    min_battery: int = 0
    screen: str = "any"  # on | off | any
    charging: str = "any"  # yes | no | any


@dataclass
class Sweep:
    """A parsed, validated sweep file."""

    name: str
    variants: list[Variant]
    steps: list[int]
    resolutions: list[tuple[int, int]]
    repeats: int = 1
    iters_per_process: int = 1
    warmup_iters: int = 0
    order: str = "interleaved_random"
    seed: int = 0
    image_seed: int = 42
    job_timeout_s: float = 900.0
    max_attempts: int = 2
    poll_s: float = 2.0
    sample_hz: float = 5.0
    meminfo: bool = False
    cooldown: Cooldown = field(default_factory=Cooldown)
    preconditions: Preconditions = field(default_factory=Preconditions)
    device: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def config(self) -> dict[str, Any]:
        """JSON-able configuration (for manifests and the store)."""
        from dataclasses import asdict

        return asdict(self)


@dataclass(frozen=True)
class Job:
    """One process launch: (variant, steps, resolution, repeat index)."""

    job_id: str
    variant: Variant
    steps: int
    height: int
    width: int
    repeat_idx: int
    order_idx: int
    artifacts: tuple[tuple[str, str, str], ...]  # (name in run folder, local path, sha256)

    def command(self, sweep: Sweep) -> str:
        """The variant's command with this job's values filled in."""
        return render_command(self.variant, sweep, steps=self.steps, height=self.height, width=self.width,
                              repeat=self.repeat_idx)


class _QuotingFormatter(string.Formatter):
    """``str.format`` whose every replacement field becomes one quoted shell word."""

    def format_field(self, value: Any, format_spec: str) -> str:
        return q(super().format_field(value, format_spec))


def _shell_quote_state(text: str, state: str) -> str:
    """The quote state (``""``, ``"'"`` or ``'"'``) of a POSIX shell word after ``text``, starting in ``state``."""
    escaped = False
    for c in text:
        if escaped:
            escaped = False
        elif state == "'":
            state = "" if c == "'" else state
        elif c == "\\":
            escaped = True
        elif state == '"':
            state = "" if c == '"' else state
        elif c in "'\"":
            state = c
    return state


def _check_placeholders_unquoted(command: str, where: str) -> None:
    """Refuse ``'{x}'`` / ``"{x}"``: placeholders are quoted already, and quotes around them would split them."""
    state = ""
    for literal, name, _spec, _conv in string.Formatter().parse(command):
        state = _shell_quote_state(literal, state)
        if name is not None and state:
            raise ConfigError(f"{where}: placeholder {{{name}}} is inside quotes; placeholders are quoted for "
                              "you (each becomes one shell word), so remove the quotes around it")


def render_command(variant: Variant, sweep: Sweep, *, where: str = "", **values: Any) -> str:
    """The variant's command line with every placeholder replaced by one quoted shell word."""
    where = where or f"{sweep.path}: variant {variant.name!r} command"
    fields = {**get_runner(variant.runner).placeholders(), **{name: name for name, _ in variant.files},
              **dict(variant.args), "iters": sweep.iters_per_process, "warmup": sweep.warmup_iters,
              "seed": sweep.image_seed, **values}
    return render_template(variant.command, fields, where)


def render_template(template: str, fields: dict[str, Any], where: str) -> str:
    """``template`` with each placeholder one quoted shell word, or one line naming ``where`` and the known names."""
    try:
        _check_placeholders_unquoted(template, where)
        return _QuotingFormatter().format(template, **fields)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{where} has a bad placeholder {exc}; known: {', '.join(sorted(fields))}") from exc


def template_fields(template: str) -> set[str]:
    """The ``{placeholder}`` names of a command template (unparsable braces give none)."""
    try:
        return {name.split(".")[0].split("[")[0] for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError:
        return set()


def render_generate(variant: Variant, sweep: Sweep, *, where: str = "", **values: Any) -> str:
    """The variant's ``generate`` template with every placeholder one quoted shell word.

    A batch template (``{prompts}``) gets ``prompts``, ``outdir``, ``metrics_out``, ``steps``, ``width``,
    ``height``; a per-image one ``prompt``, ``seed``, ``output``, ``source``, ``key``, ``steps``, ``width``,
    ``height``; both get the variant's ``files`` names and ``args``.
    """
    where = where or f"{sweep.path}: variant {variant.name!r} generate"
    if not variant.generate:
        raise ConfigError(f"{where}: missing; add a generate command template to the variant")
    return render_template(variant.generate, {**{name: name for name, _ in variant.files}, **dict(variant.args),
                                              **values}, where)


def check_generate(variant: Variant, sweep: Sweep, where: str) -> None:
    """A ``generate`` template's mode and placeholders, checked with sample values (one line naming the field)."""
    mode = variant.generate_mode
    names = template_fields(variant.generate or "")
    need = ("prompts", "outdir") if mode == "batch" else ("prompt", "output")
    missing = [n for n in need if n not in names]
    if missing:
        kind = "a batch template (it uses {prompts})" if mode == "batch" else "a per-image template (no {prompts})"
        raise ConfigError(f"{where}: {kind} needs {', '.join('{' + n + '}' for n in missing)}; a batch binary reads "
                          "{prompts} and writes {outdir}/<key>.png, a per-image one writes {output} for {prompt}")
    sample = dict.fromkeys(GENERATE_BATCH if mode == "batch" else GENERATE_PER_IMAGE, "x")
    render_generate(variant, sweep, where=where, **sample)


def _name(path: str, where: str, what: str, value: Any) -> str:
    """:func:`safe_name` with the sweep file and field in the one-line error."""
    try:
        return safe_name(value, what=what, where=f"{path}: {where}")
    except HarnessError as exc:
        raise ConfigError(str(exc)) from None


def _fail(path: str, where: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {message}")


def _check_keys(path: str, where: str, data: dict, allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(sorted(allowed))}"
            raise _fail(path, where, f"unknown key {key!r}; {hint}")


def _int(path: str, where: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise _fail(path, where, f"{value!r} must be an integer {rng}")
    return value


def _num(path: str, where: str, value: Any, lo: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < lo or value != value:
        raise _fail(path, where, f"{value!r} must be a number >= {lo}")
    return float(value)


def _resolution(path: str, value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        h = w = value
    elif isinstance(value, str) and value.count("x") == 1 and all(p.isdigit() for p in value.split("x")):
        h, w = (int(p) for p in value.split("x"))
    elif isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(p, int) for p in value):
        h, w = value
    else:
        raise _fail(path, "resolutions", f"{value!r} is not HxW (e.g. \"1024x1024\", 768 or [768, 1024])")
    if h < 8 or w < 8 or h % 8 or w % 8 or h > 8192 or w > 8192:
        raise _fail(path, "resolutions", f"{h}x{w} is impossible; sides must be multiples of 8 in [8, 8192]")
    return h, w


def load_sweep_data(path: str | Path) -> dict[str, Any]:
    """Read a ``.toml`` (tomllib) or ``.yaml``/``.yml`` (PyYAML) sweep file."""
    from harness.core.errors import HarnessError
    from harness.core.jsonio import read_text

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: sweep file not found")
    try:
        text = read_text(p, "save the sweep file as UTF-8")
    except HarnessError as exc:
        raise ConfigError(str(exc)) from None
    if p.suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ImportError as exc:
                raise ConfigError(f"{p}: TOML needs Python 3.11+ or `pip install tomli`") from exc
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    elif p.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ConfigError(f"{p}: YAML sweep files need PyYAML (pip install 'dreamlite-harness[device]'), "
                              "or write the sweep as .toml") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {str(exc).splitlines()[0]}") from exc
    else:
        raise ConfigError(f"{p}: unknown sweep file type {p.suffix!r}; use .toml, .yaml or .yml")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a table/mapping")
    return data


def parse_sweep(data: dict[str, Any], path: str = "<sweep>", base_dir: Path | None = None) -> Sweep:
    """Validate sweep data; every problem is one :class:`ConfigError` naming the file and the field."""
    base_dir = base_dir or Path(path).parent
    _check_keys(path, "top level", data, TOP_KEYS)
    for required in ("name", "steps", "resolutions", "variants"):
        if required not in data:
            raise _fail(path, "top level", f"missing required key {required!r}")
    name = _name(path, "name", "sweep name", data["name"])
    steps = data["steps"] if isinstance(data["steps"], list) else [data["steps"]]
    steps = [_int(path, "steps", s, 1, 1000) for s in steps]
    res_list = data["resolutions"] if isinstance(data["resolutions"], list) else [data["resolutions"]]
    resolutions = [_resolution(path, r) for r in res_list]
    if not steps or not resolutions:
        raise _fail(path, "steps/resolutions", "must not be empty")
    order = data.get("order", "interleaved_random")
    if order not in ORDERS:
        raise _fail(path, "order", f"{order!r}; choose one of {', '.join(ORDERS)}")
    raw_variants = data["variants"]
    if not isinstance(raw_variants, list) or not raw_variants:
        raise _fail(path, "variants", "must be a non-empty list of tables ([[variants]] in TOML)")
    variants: list[Variant] = []
    for i, v in enumerate(raw_variants):
        where = f"variants[{i}]"
        if not isinstance(v, dict):
            raise _fail(path, where, "must be a table")
        _check_keys(path, where, v, VARIANT_KEYS)
        for req in ("name", "runner", "command"):
            if not isinstance(v.get(req), str) or not v.get(req):
                raise _fail(path, f"{where}.{req}", "missing or not a string")
        if "generate" in v and (not isinstance(v["generate"], str) or not v["generate"].strip()):
            raise _fail(path, f"{where}.generate", "must be a non-empty command template string")
        _name(path, f"{where}.name", "variant name", v["name"])
        if v["runner"] not in RUNNERS:
            raise _fail(path, f"{where}.runner", f"unknown runner {v['runner']!r}; choose one of "
                        f"{', '.join(sorted(RUNNERS))}")
        files = v.get("files", {}) or {}
        if not isinstance(files, dict):
            raise _fail(path, f"{where}.files", "must be a table of name = \"local path\"")
        resolved = []
        for fname, fpath in files.items():
            _name(path, f"{where}.files", "file name", fname)
            local = (base_dir / str(fpath)).resolve() if not Path(str(fpath)).is_absolute() else Path(str(fpath))
            if not local.is_file():
                raise _fail(path, f"{where}.files.{fname}", f"artifact {local} not found; fix the path "
                            "(relative paths are relative to the sweep file)")
            resolved.append((fname, str(local)))
        args = v.get("args", {}) or {}
        if not isinstance(args, dict):
            raise _fail(path, f"{where}.args", "must be a table")
        outputs = v.get("outputs", []) or []
        if not isinstance(outputs, list):
            raise _fail(path, f"{where}.outputs", "must be a list of file names")
        for out in outputs:
            _name(path, f"{where}.outputs", "output name", out)
        variants.append(Variant(
            name=v["name"], runner=v["runner"], command=v["command"], files=tuple(sorted(resolved)),
            args=tuple(sorted(args.items())), outputs=tuple(outputs),
            runtime=v.get("runtime"), backend=v.get("backend"), precision=v.get("precision"),
            threads=None if v.get("threads") is None else _int(path, f"{where}.threads", v["threads"], 1, 64),
            memory_mode=v.get("memory_mode"), generate=v.get("generate")))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise _fail(path, "variants", f"duplicate variant names: {sorted({n for n in names if names.count(n) > 1})}")
    cd = data.get("cooldown", {}) or {}
    _check_keys(path, "cooldown", cd, COOLDOWN_KEYS)
    cooldown = Cooldown(
        sensor=str(cd.get("sensor", "SKIN")),
        max_delta_c=_num(path, "cooldown.max_delta_c", cd.get("max_delta_c", 2.0), 0),
        abs_max_c=_num(path, "cooldown.abs_max_c", cd.get("abs_max_c", 38.0), 0),
        min_s=_num(path, "cooldown.min_s", cd.get("min_s", 0.0), 0),
        max_s=_num(path, "cooldown.max_s", cd.get("max_s", 300.0), 0),
        poll_s=_num(path, "cooldown.poll_s", cd.get("poll_s", 5.0), 0.01),
        thermal_status_max=_int(path, "cooldown.thermal_status_max", cd.get("thermal_status_max", 0), 0, 6))
    if cooldown.min_s > cooldown.max_s:
        raise _fail(path, "cooldown", f"min_s {cooldown.min_s} > max_s {cooldown.max_s}")
    pc = data.get("preconditions", {}) or {}
    _check_keys(path, "preconditions", pc, PRECONDITION_KEYS)
    pre = Preconditions(min_battery=_int(path, "preconditions.min_battery", pc.get("min_battery", 0), 0, 100),
                        screen=str(pc.get("screen", "any")), charging=str(pc.get("charging", "any")))
    if pre.screen not in ("on", "off", "any"):
        raise _fail(path, "preconditions.screen", f"{pre.screen!r}; choose on, off or any")
    if pre.charging not in ("yes", "no", "any"):
        raise _fail(path, "preconditions.charging", f"{pre.charging!r}; choose yes, no or any")
    dev = data.get("device", {}) or {}
    _check_keys(path, "device", dev, DEVICE_KEYS)
    for key in ("workdir", "sysroot"):
        if key in dev and (why := device_path_problem(dev[key])):
            raise _fail(path, f"device.{key}", f"{dev[key]!r} {why}")
    sweep = Sweep(
        name=name, variants=variants, steps=steps, resolutions=resolutions,
        repeats=_int(path, "repeats", data.get("repeats", 1), 1, 10000),
        iters_per_process=_int(path, "iters_per_process", data.get("iters_per_process", 1), 1, 10000),
        warmup_iters=_int(path, "warmup_iters", data.get("warmup_iters", 0), 0, 10000),
        order=order, seed=_int(path, "seed", data.get("seed", 0), 0),
        image_seed=_int(path, "image_seed", data.get("image_seed", 42), 0),
        job_timeout_s=_num(path, "job_timeout_s", data.get("job_timeout_s", 900.0), 0.1),
        max_attempts=_int(path, "max_attempts", data.get("max_attempts", 2), 1, 100),
        poll_s=_num(path, "poll_s", data.get("poll_s", 2.0), 0.01),
        sample_hz=_num(path, "sample_hz", data.get("sample_hz", 5.0), 0.01),
        meminfo=bool(data.get("meminfo", False)), cooldown=cooldown, preconditions=pre, device=dict(dev),
        path=str(path))
    if sweep.warmup_iters >= sweep.iters_per_process:
        raise _fail(path, "warmup_iters", f"{sweep.warmup_iters} leaves no measured iteration out of "
                    f"iters_per_process = {sweep.iters_per_process}")
    for i, v in enumerate(variants):  # catch bad placeholders now, not on the phone
        render_command(v, sweep, where=f"{path}: variants[{i}].command", steps=steps[0], height=resolutions[0][0],
                       width=resolutions[0][1], repeat=0)
        if v.generate is not None:
            check_generate(v, sweep, f"{path}: variants[{i}].generate")
    return sweep


def load_sweep(path: str | Path) -> Sweep:
    """Load and validate a sweep file."""
    return parse_sweep(load_sweep_data(path), str(path), Path(path).resolve().parent)


_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha(path: str) -> str:
    """sha256 of a local artifact, cached by (path, size, mtime)."""
    st = Path(path).stat()
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


def job_id_for(variant: Variant, artifacts: list[tuple[str, str, str]], sweep: Sweep, steps: int, height: int,
               width: int, repeat_idx: int, serial: str) -> str:
    """sha1 over everything that determines the measurement (stable across restarts)."""
    runner = get_runner(variant.runner)
    ident = {"variant": variant.name, "artifacts": sorted((n, s) for n, _, s in artifacts),
             "runner": [runner.name, runner.version], "command": variant.command, "args": list(variant.args),
             "steps": steps, "h": height, "w": width, "repeat": repeat_idx, "serial": serial,
             "iters": sweep.iters_per_process, "warmup": sweep.warmup_iters, "seed": sweep.image_seed}
    return hashlib.sha1(canonical_json(ident).encode()).hexdigest()[:16]


def expand(sweep: Sweep, serial: str) -> list[Job]:
    """All jobs in run order (``order_idx`` 0..N-1)."""
    arts = {v.name: [(n, p, file_sha(p)) for n, p in v.files] for v in sweep.variants}
    configs = [(v, s, h, w) for v in sweep.variants for s in sweep.steps for h, w in sweep.resolutions]
    plan: list[tuple[Variant, int, int, int, int]] = []
    if sweep.order == "sequential":
        plan = [(v, s, h, w, r) for v, s, h, w in configs for r in range(sweep.repeats)]
    else:
        for r in range(sweep.repeats):
            round_configs = list(configs)
            if sweep.order == "interleaved_random":
                random.Random(sweep.seed * 1_000_003 + r).shuffle(round_configs)
            plan.extend((v, s, h, w, r) for v, s, h, w in round_configs)
    return [Job(job_id_for(v, arts[v.name], sweep, s, h, w, r, serial), v, s, h, w, r, i, tuple(arts[v.name]))
            for i, (v, s, h, w, r) in enumerate(plan)]
