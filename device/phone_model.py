"""``phone``: the deployed variant of a sweep file as an ordinary model adapter (``harness run ... --model phone``).

The images come from the device, made by the binary the sweep times: the variant's ``generate`` template
(batch or one process per image; :mod:`harness.device.generate`). Everything else is the engine's (plan,
batches, resume, shards, scoring, reports). Each image carries what the device measured
(``image.info["harness"]``, recorded with the image): ``seconds`` and ``stage_ms`` of that image, and of its
batch the device (``device``), peak memory (``peak_rss_kb``), battery before and after (``battery_before``,
``battery_after``, ``charging``), ``throttled`` and the rest of the device state under ``phone``.

Options (``--model-args``): ``sweep`` (the sweep file), ``variant`` (its name; optional when one variant
has a ``generate`` template), ``steps`` and ``resolution`` (optional when the sweep lists one); the device
options of ``harness device`` (``backend=adb|adb-cli|local``, ``host=HOST[:PORT]``, ``port``, ``serial``,
``usb``, ``key``, ``workdir``, ``adb_server_port``, ``timeout``), which do not change the images and are not
part of the run's identity; ``image_timeout`` (seconds without a new image before the generator counts as
hung; default the sweep's ``job_timeout_s``); ``keep`` (keep every batch folder on the device; by default
a batch's folder is deleted once the engine asks for the next batch, i.e. once its images are recorded).
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from harness.api.model import FailedImage, ImageModel
from harness.core.errors import HarnessError
from harness.core.hashing import content_hash, sha256_bytes
from harness.core.options import BOOLEAN, POSITIVE_INT, POSITIVE_NUMBER, SIZE, Check, one_of, optional
from harness.device.cli import PORT

if TYPE_CHECKING:
    from PIL import Image

    from harness.device.generate import BatchOutcome, ImageResult, PhoneGenerator
    from harness.device.sweep import Sweep, Variant

#: the options of ``harness device`` (how the device is reached; :func:`harness.device.cli.make_device`)
DEVICE_OPTIONS = ("backend", "host", "port", "serial", "usb", "key", "workdir", "sysroot", "adb_server_port", "timeout")
#: options that do not change the images
CONNECTION = (*DEVICE_OPTIONS, "image_timeout", "poll_window", "reconnect_budget", "keep")


def parse_resolution(value: Any) -> tuple[int, int]:
    """``N`` or ``"WxH"`` → (width, height)."""
    if isinstance(value, int):
        return value, value
    width, _, height = str(value).lower().partition("x")
    return int(width), int(height or width)


class PhoneModel(ImageModel):
    """A sweep variant's ``generate`` binary on a phone (or ``backend=local``: this host)."""

    name: ClassVar[str] = "phone"
    capabilities: ClassVar[frozenset[str]] = frozenset({"generate", "edit"})
    #: where the phone is, as on `harness device`: `harness run ... --model phone --host 192.168.1.20:5555`
    cli_flags: ClassVar[dict[str, str]] = {"--host": "host", "--serial": "serial", "--backend": "backend",
                                           "--key": "key"}
    defaults: ClassVar[dict[str, Any]] = {
        "sweep": None, "variant": None, "steps": None, "resolution": None,
        "backend": None, "host": None, "port": None, "serial": None, "usb": False, "key": None, "workdir": None,
        "sysroot": None, "adb_server_port": None, "timeout": 10.0, "image_timeout": None, "poll_window": 5.0,
        "reconnect_budget": 120.0, "keep": False,
    }
    option_types: ClassVar[Mapping[str, Check]] = {
        "steps": POSITIVE_INT, "resolution": SIZE, "backend": one_of("adb", "adb-cli", "local"), "port": PORT,
        "adb_server_port": PORT, "usb": BOOLEAN, "timeout": POSITIVE_NUMBER, "image_timeout": optional(POSITIVE_NUMBER),
        "poll_window": POSITIVE_NUMBER, "reconnect_budget": POSITIVE_NUMBER,
    }
    unhashed_options: ClassVar[frozenset[str]] = frozenset(CONNECTION)

    def __init__(self, **options: Any):
        super().__init__(**options)
        from harness.device.sweep import load_sweep

        path = self.options["sweep"]
        if not path:
            raise HarnessError("--model-args sweep=FILE: model 'phone' needs the sweep file whose variant made the "
                               "images (e.g. sweep=xiaomi14.toml,variant=w8a16-opencl,steps=4)")
        self.sweep: Sweep = load_sweep(str(path))
        self.variant_index, self.variant = self._variant()
        self.steps = self._one("steps", self.sweep.steps)
        if self.options["resolution"] is not None:
            self.width, self.height = parse_resolution(self.options["resolution"])
        else:
            height, width = self._one("resolution", self.sweep.resolutions)
            self.width, self.height = width, height
        self._generator: PhoneGenerator | None = None
        self._returned: list[str] = []  # batch folders whose images were handed over (recorded by the next call)

    def _variant(self) -> tuple[int, Variant]:
        wanted, path = self.options["variant"], self.sweep.path
        able = [(i, v) for i, v in enumerate(self.sweep.variants) if v.generate]
        if wanted is None and len(self.sweep.variants) == 1:
            wanted = self.sweep.variants[0].name
        if wanted is None:
            if not able:
                raise HarnessError(f"{path}: no variant has a generate template; add generate = \"...\" next to the "
                                   "command of the variant whose images you want (docs/device.md, 'Generating images')")
            if len(able) != 1:
                names = ", ".join(v.name for _, v in able) or "none has one"
                raise HarnessError(f"--model-args variant=NAME: {path} has {len(able)} variants with a generate "
                                   f"template ({names}); name one")
            return able[0]
        for i, v in enumerate(self.sweep.variants):
            if v.name == str(wanted):
                if not v.generate:
                    raise HarnessError(f"{path}: variants[{i}] ({v.name}) has no generate template; add generate = "
                                       "\"...\" next to its command (docs/device.md, 'Generating images')")
                return i, v
        raise HarnessError(f"--model-args variant={wanted}: no such variant in {path}; its variants: "
                           f"{', '.join(v.name for v in self.sweep.variants)}")

    def _one(self, option: str, values: list[Any]) -> Any:
        if self.options[option] is not None:
            return self.options[option]
        if len(values) != 1:
            raise HarnessError(f"--model-args {option}=...: {self.sweep.path} lists {len(values)} {option} values; "
                               f"pick one (e.g. {option}={values[0] if option == 'steps' else 'WxH'})")
        return values[0]

    # -- identity --------------------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """What makes the images: the variant's template, files (by sha256), args, runtime, steps and size;
        not where the sweep file is nor how the device is reached."""
        from harness.device.sweep import file_sha

        v = self.variant
        return {"adapter": self.name, "class": f"{type(self).__module__}.{type(self).__qualname__}",
                "sweep": self.sweep.name, "variant": v.name, "runner": v.runner, "runtime": v.runtime,
                "backend": v.backend, "precision": v.precision, "generate": v.generate,
                "files": {name: file_sha(local) for name, local in v.files}, "args": dict(v.args),
                "steps": self.steps, "width": self.width, "height": self.height}

    # -- device ----------------------------------------------------------------------------------------
    def load(self) -> None:
        """Open the device and check it (connect, boot id, run wrapper, identity)."""
        from harness.device.cli import make_device
        from harness.device.generate import PhoneGenerator
        from harness.device.session import Reconnecting

        o = self.options
        device = make_device(argparse.Namespace(**{k: o[k] for k in DEVICE_OPTIONS}), self.sweep.device)
        session = Reconnecting(device, budget_s=float(o["reconnect_budget"]))
        timeout = float(o["image_timeout"] or self.sweep.job_timeout_s)
        self._generator = PhoneGenerator(device, self.sweep, self.variant, steps=self.steps, width=self.width,
                                         height=self.height, image_timeout_s=timeout, identity=self.model_hash(),
                                         session=session, poll_window_s=float(o["poll_window"]))
        self._generator.start()

    def close(self) -> None:
        """Close the device link."""
        if self._generator is not None:
            self._generator.device.close()

    @property
    def generator(self) -> PhoneGenerator:
        self.ensure_loaded()
        assert self._generator is not None
        return self._generator

    # -- images ----------------------------------------------------------------------------------------
    def request_key(self, prompt: str, seed: int, source_sha: str | None = None) -> str:
        """The device-side name of one image: a hash of the model and what it was asked."""
        return content_hash([self.model_hash(), prompt, int(seed), source_sha], 20)

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], **sampler: Any) -> list[Image.Image]:
        from harness.device.generate import ImageRequest

        self._no_sampler(sampler)
        if len(prompts) != len(seeds):
            raise ValueError("generate: one seed per prompt")
        return self._run([ImageRequest(self.request_key(p, s), p, int(s)) for p, s in zip(prompts, seeds,
                                                                                          strict=True)])

    def edit(self, images: Sequence[Image.Image], instructions: Sequence[str], seeds: Sequence[int],
             **sampler: Any) -> list[Image.Image]:
        from harness.device.generate import ImageRequest
        from harness.device.sweep import template_fields

        self._no_sampler(sampler)
        if not len(images) == len(instructions) == len(seeds):
            raise ValueError("edit: one image and one seed per instruction")
        v = self.variant
        if v.generate_mode == "per_image" and "source" not in template_fields(v.generate or ""):
            raise HarnessError(f"{self.sweep.path}: variants[{self.variant_index}].generate ({v.name}) has no "
                               "{source} placeholder; an edit needs the source image (e.g. -i {source})")
        requests = []
        for image, instruction, seed in zip(images, instructions, seeds, strict=True):
            buf = io.BytesIO()
            image.convert("RGB").save(buf, format="PNG")
            png = buf.getvalue()
            requests.append(ImageRequest(self.request_key(instruction, seed, sha256_bytes(png)), instruction,
                                         int(seed), png))
        return self._run(requests)

    def _no_sampler(self, sampler: Mapping[str, Any]) -> None:
        if sampler:
            raise HarnessError(f"model {self.name!r}: no per-call sampler options ({', '.join(sampler)}); the "
                               "variant's generate template and --model-args steps/resolution set them")

    def _run(self, requests: list[Any]) -> list[Image.Image | FailedImage]:
        """One batch on the device. An image it did not make comes back as a :class:`FailedImage` (the engine
        records the unit failed, the benchmark counts it, the next run retries it)."""
        if self._returned and not self.options["keep"]:  # the engine recorded them before asking for more
            self.generator.remove(self._returned)
            self._returned = []
        outcome = self.generator.run(requests)
        if all(r.error is None for r in outcome.results):
            self._returned.append(outcome.folder)  # a batch with a failure stays: the rerun collects what it made
        return [self._image(r, outcome) if r.error is None else FailedImage(
                    f"{r.error} (on {self.generator.device.serial}, variant {self.variant.name})", r.partial)
                for r in outcome.results]

    @staticmethod
    def _image(result: ImageResult, outcome: BatchOutcome) -> Image.Image:
        from PIL import Image

        assert result.png is not None
        with Image.open(io.BytesIO(result.png)) as im:
            image = im.convert("RGB")
        measured = {k: v for k, v in outcome.fields.items() if k != "phone"}
        measured["phone"] = {**outcome.fields.get("phone", {}), "key": result.key, "attempt": result.attempt}
        measured["seconds"] = result.seconds  # None when the device did not say (never the host's wall time)
        if result.stage_ms:
            measured["stage_ms"] = result.stage_ms
        image.info["harness"] = measured
        return image
