"""Visual question answering scorers (entry-point group ``harness.scorers``, names ``vqa-*``).

Each answers every yes/no question about one image in one call, :meth:`VQAScorer.answer`, returning the
model's raw answer texts (a benchmark decides what counts as "yes"):

* ``vqa-mplug``: ModelScope's mPLUG-large VQA (``damo/mplug_visual-question-answering_coco_large_en``), the
  model DPG-Bench's official scorer uses, called exactly as that scorer calls it (one pipeline call per
  question). Optional: ModelScope is not a dependency (``pip install 'dreamlite-harness[dpg-mplug]'``).
* ``vqa-transformers``: any transformers VQA model by hub id or folder: answer classifiers (ViLT) in one
  forward pass over all questions of the image, generative ones (BLIP) in one batched ``generate``.
* ``vqa-tiny``: a tiny random-weight ViLT built in code and loaded back through ``from_pretrained`` (tests
  and demos; its answers mean nothing).
* ``vqa-openai``: any OpenAI-compatible VLM through the shared judge (:mod:`harness.scorers.openai_judge`):
  one request per question, sent concurrently, cached, retried.

Only ``vqa-mplug`` is :attr:`VQAScorer.official`; the others are labelled alternatives. Heavy libraries are
imported inside the methods only.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.api.scorer import Scorer
from harness.core.errors import HarnessError
from harness.core.fsio import atomic_write_bytes
from harness.core.options import POSITIVE_INT, Check
from harness.scorers.openai_judge import JudgeRequest, OpenAIJudge

if TYPE_CHECKING:
    from PIL import Image

MPLUG_MODEL = "damo/mplug_visual-question-answering_coco_large_en"
MPLUG_INSTALL = ("pip install 'dreamlite-harness[dpg-mplug]' (ModelScope; DPG-Bench's requirements also list "
                 "timm, fairseq and librosa==0.10.1, and users report that a Python 3.8 environment works best)")
TINY_VERSION = 1
#: the question as sent to a VLM: the benchmark's question, then the instruction to answer yes or no
VLM_TEMPLATE = "{question}\nAnswer with one word: yes or no."
VLM_PROTOCOL = "vqa-yes-no-v1"
#: words given their own token by the tiny model's tokenizer (anything else is spelled letter by letter)
_TINY_WORDS = ("is", "are", "there", "a", "an", "the", "of", "in", "on", "with", "and", "to", "at", "by", "it",
               "this", "that", "has", "have", "does", "do", "image", "picture", "photo", "color", "red", "green",
               "blue", "yellow", "white", "black", "brown", "orange", "pink", "purple", "gray", "two", "three",
               "four", "five", "left", "right", "above", "below", "near", "next", "behind", "front", "large",
               "small", "big", "tall", "sitting", "standing", "holding", "wearing", "text", "sign", "sky", "man",
               "woman", "person", "dog", "cat", "car", "tree", "house", "table")


class VQAFailure(Exception):
    """The answers for one image could not be had this time (e.g. the endpoint gave up); a rerun retries."""


class VQAScorer(Scorer):
    """Base of VQA scorers: :meth:`answer` every question about one image, in one call."""

    kind: ClassVar[str] = "vqa"
    option_flag: ClassVar[str] = "--vqa-args"
    label: ClassVar[str] = "vqa"
    #: whether this is the VQA model of a benchmark's official scorer (DPG-Bench: mPLUG-large)
    official: ClassVar[bool] = False

    def answer(self, image: Image.Image, questions: Sequence[str]) -> list[str]:
        """The raw answer text to each question about ``image``, in order."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short name of the model behind the answers (for labels)."""
        return self.name


# -- transformers ------------------------------------------------------------------------------------------------
class TransformersVQA(VQAScorer):
    """A transformers VQA model (hub id or ``save_pretrained`` folder): classifiers and generative models."""

    name: ClassVar[str] = "vqa-transformers"
    label: ClassVar[str] = "transformers VQA"
    defaults: ClassVar[Mapping[str, Any]] = {
        "weights": "dandelin/vilt-b32-finetuned-vqa", "revision": None, "device": "auto", "dtype": "float32",
        "batch_size": 64, "max_new_tokens": 10,
    }
    option_types: ClassVar[Mapping[str, Check]] = {"batch_size": POSITIVE_INT, "max_new_tokens": POSITIVE_INT}
    unhashed_options: ClassVar[frozenset[str]] = frozenset({"device"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.device: str | None = None
        self.dtype: Any = None
        self.model: Any = None
        self.processor: Any = None
        self.generative = False

    def _runtime(self) -> None:
        if self.device is None:
            from harness.core.torchenv import resolve_device, resolve_dtype

            device = resolve_device(self.options["device"])
            self.dtype = resolve_dtype(self.options["dtype"], device)
            self.device = device

    def resolve(self) -> None:
        """Device and dtype, and the weights: a model folder, or a hub id cached (offline) or served."""
        from harness.core.hub import check_weights

        self._runtime()
        check_weights(str(self.options["weights"]), self.options["revision"], marker="config.json",
                      what="transformers model", flag=self.option_flag)

    def _weights(self) -> str:
        return str(Path(str(self.options["weights"])).expanduser())

    def load(self) -> None:
        if self.model is not None:
            return
        import transformers
        from transformers import AutoModelForVisualQuestionAnswering, AutoProcessor

        self._runtime()
        transformers.utils.logging.disable_progress_bar()
        weights, revision = self._weights(), self.options.get("revision")
        try:
            self.processor = AutoProcessor.from_pretrained(weights, revision=revision)
            model = AutoModelForVisualQuestionAnswering.from_pretrained(weights, revision=revision)
        except (OSError, ValueError, KeyError) as exc:
            raise HarnessError(f"could not load a VQA model from {weights!r}: {str(exc).splitlines()[0][:200]}; "
                               f"pass {self.option_flag} weights=HUB_ID_OR_FOLDER of a visual-question-answering "
                               "model (ViLT, BLIP)") from None
        self.model = model.to(self.device, self.dtype).eval()
        self.generative = bool(model.can_generate())

    def close(self) -> None:
        self.model = self.processor = None

    def fingerprint(self) -> dict[str, Any]:
        self._runtime()
        return {"scorer": self.name, **self.option_fingerprint(), "dtype": str(self.dtype)}

    def describe(self) -> str:
        return f"transformers:{self.options['weights']}"

    def answer(self, image: Image.Image, questions: Sequence[str]) -> list[str]:
        """All questions about ``image`` in batches of ``batch_size`` (one forward or ``generate`` each)."""
        import torch

        self.load()
        image = image.convert("RGB")
        out: list[str] = []
        size = int(self.options["batch_size"])
        with torch.inference_mode():
            for start in range(0, len(questions), size):
                out += self._batch(image, list(questions[start:start + size]))
        return out

    def _batch(self, image: Image.Image, questions: list[str]) -> list[str]:
        n = len(questions)
        tokenizer = self.processor.tokenizer
        limit = getattr(self.model.config, "max_position_embeddings", None) or tokenizer.model_max_length
        text = tokenizer(questions, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        pixels = self.processor.image_processor(image, return_tensors="pt")  # the image once, shared by all
        inputs = {k: v.to(self.device) for k, v in text.items()}
        for k, v in pixels.items():
            inputs[k] = v.to(self.device, self.dtype if v.is_floating_point() else v.dtype).expand(n, *v.shape[1:])
        if self.generative:  # BLIP-style: the question's ids and mask, the image; answers decoded
            inputs.pop("token_type_ids", None)
            ids = self.model.generate(**inputs, max_new_tokens=int(self.options["max_new_tokens"]))
            return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
        labels = self.model.config.id2label
        return [labels[i] for i in self.model(**inputs).logits.argmax(-1).tolist()]


class TinyVQA(TransformersVQA):
    """A tiny random-weight ViLT answering yes or no, built in code and loaded through ``from_pretrained``.

    Its answer head is centred so that both answers occur; they mean nothing. For tests and demos only.
    """

    name: ClassVar[str] = "vqa-tiny"
    label: ClassVar[str] = "tiny random VQA"
    defaults: ClassVar[Mapping[str, Any]] = {"seed": 0, "device": "cpu", "dtype": "float32", "batch_size": 64,
                                             "max_new_tokens": 10}

    def resolve(self) -> None:
        """Device and dtype only: the weights are built in code by :meth:`load`."""
        self._runtime()

    def _weights(self) -> str:
        from harness.core.datafiles import cache_dir

        folder = cache_dir() / "tiny" / f"vilt-vqa-v{TINY_VERSION}-seed{self.options['seed']}"
        if not (folder / "config.json").is_file():
            build_tiny_vqa(folder, seed=int(self.options["seed"]))
        return str(folder)

    def fingerprint(self) -> dict[str, Any]:
        return {"scorer": self.name, "version": TINY_VERSION, "seed": self.options["seed"],
                "batch_size": self.options["batch_size"]}

    def describe(self) -> str:
        return "tiny-random"


def build_tiny_vqa(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Build and save a tiny ViLT VQA model with two answers (``save_pretrained`` files, ``config.json`` last)."""
    import string

    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast, ViltConfig, ViltForQuestionAnswering, ViltImageProcessor, ViltProcessor

    folder = Path(folder)
    chars = string.ascii_lowercase + string.digits
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars), *"?.,'-:;!()\"&/",
             *_TINY_WORDS]
    ids = {token: i for i, token in enumerate(dict.fromkeys(vocab))}
    wordpiece = Tokenizer(models.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    wordpiece.decoder = decoders.WordPiece()
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece, model_max_length=40)
    processor = ViltProcessor(image_processor=ViltImageProcessor(size={"shortest_edge": 64}, size_divisor=32),
                              tokenizer=tokenizer)
    config = ViltConfig(vocab_size=len(ids), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, image_size=64, patch_size=16, max_position_embeddings=40,
                        initializer_range=0.3, num_labels=2, id2label={0: "yes", 1: "no"},
                        label2id={"yes": 0, "no": 1})
    torch.manual_seed(seed)
    model = ViltForQuestionAnswering(config).eval()
    with torch.no_grad():  # centred on seeded noise images, so that both answers occur
        head = model.classifier[-1]
        head.weight.sub_(head.weight.mean(dim=1, keepdim=True))
        head.bias.zero_()
        gen = torch.Generator().manual_seed(seed)
        pixels = torch.rand(16, 3, 64, 64, generator=gen) * torch.rand(16, 3, 1, 1, generator=gen) * 2 - 1
        text = tokenizer(["is there a red car?", "are the two dogs sitting on the left?"] * 8, padding=True,
                         return_tensors="pt")
        logits = model(**text, pixel_values=pixels).logits
        head.bias.sub_(torch.tensor([1.0, -1.0]) * (logits[:, 0] - logits[:, 1]).median() / 2)
    transformers.utils.logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        # each file atomically, config.json (what marks a built folder) last; builders write identical bytes
        for path in sorted(Path(tmp).iterdir(), key=lambda p: p.name == "config.json"):
            atomic_write_bytes(folder / path.name, path.read_bytes())
    return folder


# -- an OpenAI-compatible VLM ------------------------------------------------------------------------------------
class OpenAIVQA(VQAScorer):
    """Any OpenAI-compatible VLM answering each question (``VLM_TEMPLATE``) about the image, through the shared
    judge: concurrent requests, retries, the SQLite answer cache. A question without an answer after the
    retries fails the image (:class:`VQAFailure`), which the next run retries."""

    name: ClassVar[str] = "vqa-openai"
    label: ClassVar[str] = "VLM judge"
    #: the judge's options, less its protocol (ours) and price (no cost estimate here)
    defaults: ClassVar[Mapping[str, Any]] = {k: v for k, v in OpenAIJudge.defaults.items()
                                             if k not in ("protocol", "price")}
    option_types: ClassVar[Mapping[str, Check]] = {k: v for k, v in OpenAIJudge.option_types.items()
                                                   if k not in ("protocol", "price")}
    unhashed_options: ClassVar[frozenset[str]] = OpenAIJudge.unhashed_options

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.judge = OpenAIJudge(**self.options, protocol=VLM_PROTOCOL)

    def resolve(self) -> None:
        self.judge.resolve()

    def fingerprint(self) -> dict[str, Any]:
        return {"scorer": self.name, **self.judge.fingerprint(), "template": VLM_TEMPLATE}

    def describe(self) -> str:
        return f"VLM:{self.judge.model}"

    def answer(self, image: Image.Image, questions: Sequence[str]) -> list[str]:
        pixels = hashlib.sha256(image.tobytes()).hexdigest()
        with tempfile.TemporaryDirectory(prefix="harness-vqa-") as tmp:
            path = Path(tmp) / "image.png"
            image.save(path, format="PNG")
            requests = [JudgeRequest(self.judge.cache_key({"image": [image.mode, *image.size, pixels],
                                                           "question": q, "template": VLM_TEMPLATE}),
                                     [path, VLM_TEMPLATE.format(question=q)]) for q in questions]
            results = self.judge.judge_many(requests)
        failed = [r for r in results if not r.ok]
        if failed:
            raise VQAFailure(f"{len(failed)} of {len(questions)} question(s) unanswered; first: {failed[0].reason}")
        return [str(r.answer) for r in results]


# -- ModelScope mPLUG (the official DPG-Bench scorer's model) -----------------------------------------------------
class MPlugVQA(VQAScorer):
    """mPLUG-large VQA through ``modelscope.pipelines.pipeline`` as DPG-Bench's ``compute_dpg_bench.py`` builds
    and calls it: ``pipeline({'image': image, 'question': q})['text']`` for each question (ModelScope's own
    preprocessing lower-cases and truncates the question)."""

    name: ClassVar[str] = "vqa-mplug"
    label: ClassVar[str] = "mPLUG-large VQA (ModelScope)"
    official: ClassVar[bool] = True
    defaults: ClassVar[Mapping[str, Any]] = {"model": MPLUG_MODEL, "revision": None, "device": "auto"}
    unhashed_options: ClassVar[frozenset[str]] = frozenset({"device"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._pipe: Any = None

    def resolve(self) -> None:
        """ModelScope must be importable (the weights are fetched by ModelScope itself on first use)."""
        if importlib.util.find_spec("modelscope") is None:
            raise HarnessError(f"--vqa mplug needs ModelScope, which is not installed: {MPLUG_INSTALL}; or score "
                               "with a labelled alternative (--vqa transformers, --vqa openai)")

    def load(self) -> None:
        if self._pipe is not None:
            return
        self.resolve()
        from modelscope.pipelines import pipeline
        from modelscope.utils.constant import Tasks

        from harness.core.torchenv import resolve_device

        kwargs: dict[str, Any] = {"model": self.options["model"], "device": resolve_device(self.options["device"])}
        if self.options["revision"]:
            kwargs["model_revision"] = self.options["revision"]
        self._pipe = pipeline(Tasks.visual_question_answering, **kwargs)

    def close(self) -> None:
        self._pipe = None

    def fingerprint(self) -> dict[str, Any]:
        return {"scorer": self.name, "model": self.options["model"], "revision": self.options["revision"]}

    def describe(self) -> str:
        return "mPLUG-large"

    def answer(self, image: Image.Image, questions: Sequence[str]) -> list[str]:
        self.load()
        return [str(self._pipe({"image": image, "question": q})["text"]) for q in questions]
