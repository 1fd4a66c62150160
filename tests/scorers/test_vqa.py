"""VQA scorers: the tiny ViLT and a tiny BLIP through the real ``from_pretrained`` paths (batched answers equal
one-question-per-call answers), an OpenAI-compatible VLM against the loopback peer (cache, failures), and
the mPLUG glue against a stand-in ``modelscope`` package (ModelScope itself is not installable here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from harness.core.errors import HarnessError
from harness.scorers.vqa import MPlugVQA, OpenAIVQA, TinyVQA, TransformersVQA, VQAFailure

QUESTIONS = ["Is there a red double-decker bus?", "Are the cabbages green?", "Is the dog sitting on the left?",
             "Are there eight cabbages in the morning light, blanketed by soft mist over a wide field?",
             "Does the sign read 'OPEN'?", "Is this a watercolor painting?", "Is it night?", "Is the cat black?"]


def images(n: int = 6) -> list[Any]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((48 + 8 * k, 48 + 8 * k, 3)) * 255 * (k + 1) / n).astype("uint8"))
            for k in range(n)]


def test_tiny_vqa_is_built_saved_loaded_and_batched_answers_equal_single_calls() -> None:
    vqa = TinyVQA()
    vqa.resolve()
    vqa.load()
    folder = Path(vqa._weights())
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert json.loads((folder / "config.json").read_text())["id2label"] == {"0": "yes", "1": "no"}
    answers = [vqa.answer(im, QUESTIONS) for im in images()]
    single = [[vqa.answer(im, [q])[0] for q in QUESTIONS] for im in images()]
    assert answers == single
    flat = [a for row in answers for a in row]
    assert set(flat) == {"yes", "no"}  # both answers occur, and they depend on the image
    assert len({tuple(row) for row in answers}) > 1
    small = TinyVQA(batch_size=3)
    assert [small.answer(im, QUESTIONS) for im in images()] == answers
    assert small.fingerprint() != vqa.fingerprint() and vqa.fingerprint() == TinyVQA().fingerprint()
    by_folder = TransformersVQA(weights=str(folder), device="cpu")  # the generic path reads the same folder
    by_folder.resolve()
    assert [by_folder.answer(im, QUESTIONS) for im in images()] == answers and not by_folder.generative


def test_a_generative_model_answers_in_one_batched_generate(tmp_path: Path) -> None:
    import torch
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForQuestionAnswering,
        BlipImageProcessor,
        BlipProcessor,
    )

    tiny = TinyVQA()
    tokenizer = BertTokenizerFast.from_pretrained(tiny._weights())
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 37, "max_position_embeddings": 64, "encoder_hidden_size": 32,
            "bos_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id, "pad_token_id": 0}
    vision = {"hidden_size": 32, "image_size": 32, "patch_size": 16, "num_hidden_layers": 1,
              "num_attention_heads": 2, "intermediate_size": 37}
    torch.manual_seed(0)
    BlipForQuestionAnswering(BlipConfig(text_config=text, vision_config=vision, projection_dim=32)).save_pretrained(
        tmp_path / "blip")
    BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer).save_pretrained(tmp_path / "blip")
    vqa = TransformersVQA(weights=str(tmp_path / "blip"), device="cpu", max_new_tokens=4)
    vqa.resolve()
    vqa.load()
    assert vqa.generative
    for im in images(3):
        answers = vqa.answer(im, QUESTIONS)
        assert answers == [vqa.answer(im, [q])[0] for q in QUESTIONS]
        assert all(isinstance(a, str) for a in answers)


def test_transformers_weights_are_checked_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"--vqa-args weights=.*no-such.*: no such folder"):
        TransformersVQA(weights=str(tmp_path / "no-such"), device="cpu").resolve()
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match=r"empty: not a transformers model folder \(no config.json\)"):
        TransformersVQA(weights=str(tmp_path / "empty"), device="cpu").resolve()
    with pytest.raises(HarnessError, match=r"--vqa-args: unknown option 'batch' .*did you mean 'batch_size'"):
        TransformersVQA.from_text("batch=3")


def yes_for_red(body: dict[str, Any], images: list[bytes]) -> str:
    """The peer's answer: from the question text only (so cached answers can be checked)."""
    text = next(p["text"] for p in body["messages"][0]["content"] if p["type"] == "text")
    assert text.endswith("\nAnswer with one word: yes or no.") and len(images) == 1
    return "Yes." if "red" in text.lower() else "no"


def test_a_vlm_answers_every_question_through_the_shared_judge(peer: ModuleType, api_key: str, tmp_path: Path) -> None:
    cache = tmp_path / "vqa-cache.sqlite"
    with peer.serve(answer=yes_for_red) as server:
        vqa = OpenAIVQA(base_url=server.url, model="judge-small", cache=str(cache))
        vqa.resolve()
        image = images(1)[0]
        answers = vqa.answer(image, QUESTIONS)
        sent = server.state.requests["/v1/chat/completions"]
        assert answers == ["Yes." if "red" in q.lower() else "no" for q in QUESTIONS] and sent == len(QUESTIONS)
        assert vqa.answer(image, QUESTIONS) == answers  # from the cache: nothing sent
        assert server.state.requests["/v1/chat/completions"] == sent and vqa.judge.stats.cache_hits == len(QUESTIONS)
        assert vqa.answer(images(2)[1], QUESTIONS[:2]) and server.state.requests["/v1/chat/completions"] == sent + 2
    assert api_key.encode() not in cache.read_bytes()
    fp = vqa.fingerprint()
    assert fp["scorer"] == "vqa-openai" and fp["model"] == "judge-small" and "base_url" not in fp
    assert vqa.describe() == "VLM:judge-small" and not vqa.official
    with peer.serve(fault=peer.every_nth(1, "500")) as server:
        broken = OpenAIVQA(base_url=server.url, model="judge-small", cache=str(tmp_path / "other.sqlite"),
                           max_retries=1, backoff=0.0)
        with pytest.raises(VQAFailure, match=f"{len(QUESTIONS)} of {len(QUESTIONS)} question"):
            broken.answer(images(1)[0], QUESTIONS)


FAKE_PIPELINES = '''
calls = []
built = []


class _Pipe:
    def __call__(self, inputs):
        calls.append(inputs)
        return {"text": "yes" if "red" in inputs["question"].lower() else "no"}


def pipeline(task, model=None, device=None, **kwargs):
    built.append({"task": task, "model": model, "device": device, **kwargs})
    return _Pipe()
'''


def test_mplug_says_how_to_install_and_calls_modelscope_as_the_official_scorer(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "modelscope", None)  # not importable, whatever is installed
    with pytest.raises(HarnessError, match=r"--vqa mplug needs ModelScope.*dreamlite-harness\[dpg-mplug\]"):
        MPlugVQA().resolve()
    monkeypatch.delitem(sys.modules, "modelscope")
    fake = tmp_path / "site" / "modelscope"
    (fake / "pipelines").mkdir(parents=True)
    (fake / "utils").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "utils" / "__init__.py").write_text("")
    tasks = "class Tasks:\n    visual_question_answering = 'visual-question-answering'\n"
    (fake / "utils" / "constant.py").write_text(tasks)
    (fake / "pipelines" / "__init__.py").write_text(FAKE_PIPELINES)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in ("modelscope", "modelscope.pipelines", "modelscope.utils", "modelscope.utils.constant"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    vqa = MPlugVQA(device="cpu")
    vqa.resolve()
    image = images(1)[0]
    assert vqa.answer(image, QUESTIONS) == ["yes" if "red" in q.lower() else "no" for q in QUESTIONS]
    import modelscope.pipelines as pipelines

    assert pipelines.built == [{"task": "visual-question-answering", "device": "cpu",
                                "model": "damo/mplug_visual-question-answering_coco_large_en"}]
    assert [c["question"] for c in pipelines.calls] == QUESTIONS and all(c["image"] is image for c in pipelines.calls)
    assert vqa.official and vqa.fingerprint() == {"scorer": "vqa-mplug", "revision": None,
                                                  "model": "damo/mplug_visual-question-answering_coco_large_en"}
