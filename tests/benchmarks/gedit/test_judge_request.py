"""GEdit's judge requests: the SC and PQ parts, the images encoded as the official backends do (through the shared
judge's ``InlineImage`` parts), and nothing encoded for an answer already in the cache."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from harness.benchmarks.gedit import judge as gjudge
from harness.benchmarks.gedit.prompts import PQ_PROMPT, sc_prompt
from harness.scorers.openai_judge import InlineImage, OpenAIJudge, build_messages


def save(image, path: Path) -> Path:
    image.save(path)
    return path


def test_build_messages_keeps_files_as_png_and_sends_inline_images_with_their_type(tmp_path) -> None:
    from PIL import Image

    src = save(Image.new("RGB", (8, 6), (1, 2, 3)), tmp_path / "s.png")
    parts = build_messages(["hello", src, InlineImage(b"\xff\xd8jpeg", "image/jpeg")])[0]["content"]
    assert parts[0] == {"type": "text", "text": "hello"}
    assert parts[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(src.read_bytes()).decode()
    assert parts[2]["image_url"]["url"] == "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8jpeg").decode()


def test_images_are_prepared_and_encoded_as_the_official_backends_do(tmp_path, official) -> None:
    from PIL import Image

    src = save(Image.new("RGBA", (40, 30), (200, 10, 10, 128)), tmp_path / "k_SRCIMG.png")
    edited = save(Image.linear_gradient("L").resize((64, 64)).convert("P"), tmp_path / "k.png")
    images = gjudge.CaseImages(src, edited, "image/jpeg")
    with Image.open(src) as s, Image.open(edited) as e:
        want_src = base64.b64decode(official.encode_jpeg(s))
        want_edited = base64.b64decode(official.encode_jpeg(e.convert("RGB").resize(s.size)))
    assert images.source().data == want_src and images.edited().data == want_edited
    assert images.source().media_type == "image/jpeg"
    sc, pq = gjudge.requests(("a", "b"), "Make it blue.", images, gjudge.PROFILES["gpt"])
    assert list(sc.content) == [sc_prompt("Make it blue."), images.source(), images.edited()]
    assert list(pq.content) == [PQ_PROMPT, images.edited()]
    qwen = gjudge.CaseImages(src, edited, "image/png")
    sc, pq = gjudge.requests(("a", "b"), "x", qwen, gjudge.PROFILES["qwen"])
    assert [type(p).__name__ for p in sc.content] == ["InlineImage", "InlineImage", "str"]
    with Image.open(io.BytesIO(qwen.edited().data)) as im:
        assert im.format == "PNG" and im.size == (40, 30) and im.mode == "RGB"


def test_a_cached_answer_needs_no_image_encoded(tmp_path, peer, api_key, monkeypatch) -> None:
    from PIL import Image

    src = save(Image.new("RGB", (16, 12), (9, 9, 9)), tmp_path / "k_SRCIMG.png")
    edited = save(Image.new("RGB", (16, 12), (90, 9, 9)), tmp_path / "k.png")
    calls = []
    real = gjudge.encode
    monkeypatch.setattr(gjudge, "encode", lambda im, media: calls.append(media) or real(im, media))
    with peer.serve(api_key=api_key) as srv:
        j = OpenAIJudge(base_url=srv.url, model="gpt-4.1", cache=str(tmp_path / "c.sqlite"),
                        protocol=gjudge.PROFILES["gpt"].protocol)
        for _ in range(2):
            reqs = gjudge.requests(("sc-key", "pq-key"), "Make it red.", gjudge.CaseImages(src, edited, "image/jpeg"),
                                   gjudge.PROFILES["gpt"])
            answers = j.judge_many(reqs)
            assert all(a.ok and '"score"' in a.answer for a in answers)
        assert srv.state.requests["/v1/chat/completions"] == 2
    assert calls == ["image/jpeg", "image/jpeg"]  # source and edited, once, for the first (uncached) pair only
    assert j.stats.cache_hits == 2
