"""GEdit-Bench's official scoring, transcribed for the parity tests; independent of the harness's code.

What is transcribed (docs/gedit.md describes each): VIEScore's answer parser (``viescore/utils.py``:
``mllm_output_to_dict`` and ``fix_json``, including the random guess), its evaluation loop (``VIEScore.evaluate``
for task "tie": both questions per attempt, the guess allowed from the second attempt, ``min`` of each score list,
``sqrt(SC * PQ)``), the driver of ``test_gedit_score.py`` (walk the rows of the dataset's split, skip rows whose two
files are not both there, open the source as is and the edited image converted to RGB and resized to the source's
size, rerun a sample whose evaluation raises, write the group CSVs) and ``calculate_statistics.py`` (per group the
``np.mean`` of SC, PQ and O recomputed per row, the language filter, the intersection subset, the mean over the 11
groups). The GPT backend's request (one user message: text, then each image as JPEG base64) is rebuilt too, sent
with ``urllib`` instead of ``requests``.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
import random
import re
import urllib.request
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import pandas as pd

GROUPS = ["background_change", "color_alter", "material_alter", "motion_change", "ps_human", "style_change",
          "subject-add", "subject-remove", "subject-replace", "text_change", "tone_transfer"]


def fix_json(input_str):
    fixed_str = re.sub(r"(\w+):", r'"\1":', input_str)

    def format_value(match):
        key, value, comma = match.groups()
        value = value.strip()
        if re.match(r"^-?\d+(\.\d+)?$", value):
            value = f"[{value}]"
        elif re.match(r"^(true|false|null)$", value, re.IGNORECASE):
            pass
        else:
            value = f'"{value}"'
        return f"{key}: {value}{comma}"

    return re.sub(r'(".*?"):(.*?)(,|})', format_value, fixed_str)


def is_int_between_0_and_10(s):
    try:
        num = int(s)
        return 0 <= num <= 10
    except ValueError:
        return False


def mllm_output_to_dict(input_string, give_up_parsing=False):
    if input_string == "rate_limit_exceeded":
        return "rate_limit_exceeded"
    delimiter = "||V^=^V||"
    if input_string.count(delimiter) == 2:
        start_index = input_string.find(delimiter) + len(delimiter)
        end_index = input_string.rfind(delimiter)
    else:
        start_index = input_string.find("{")
        end_index = input_string.rfind("}") + 1
        if start_index == -1 or end_index == 0:
            start_index = input_string.find("[")
            end_index = input_string.rfind("]") + 1
            if give_up_parsing:
                guessed_value = random.randint(0, 10)
                json_content = {"score": [guessed_value], "reasoning": f"guess_if_cannot_parse | {input_string}"}
                input_string = json.dumps(json_content)
                start_index, end_index = 0, len(input_string)
            elif re.match(r"^\[\d+, ?\d+\]$", input_string[start_index:end_index]):
                scores = json.loads(input_string[start_index:end_index])
                if not isinstance(scores, list):
                    scores = [scores]
                input_string = json.dumps({"score": scores, "reasoning": "System: output is simply a list of scores"})
                start_index, end_index = 0, len(input_string)
            elif is_int_between_0_and_10(input_string):
                input_string = json.dumps({"score": [int(input_string)], "reasoning": "System: output is simply a "
                                                                                       "number"})
                start_index, end_index = 0, len(input_string)
            else:
                return False
    if start_index != -1 and end_index != -1 and start_index != end_index:
        json_str = input_string[start_index:end_index].strip().replace("\n", "")
        try:
            new_data = json.loads(json_str)
            if not isinstance(new_data["score"], list):
                new_data["score"] = [new_data["score"]]
        except Exception:
            try:
                return json.loads(fix_json(json_str))
            except Exception:
                return False
        return new_data
    return False


def evaluate(ask: Callable[[str], str]) -> list:
    """``VIEScore.evaluate`` (task "tie"): ``ask(kind)`` returns the judge's reply to the SC or PQ question."""
    SC_dict = False
    PQ_dict = False
    tries = 0
    max_tries = 1
    while SC_dict is False or PQ_dict is False:
        tries += 1
        guess_if_cannot_parse = tries > max_tries
        result_SC = ask("SC")
        result_PQ = ask("PQ")
        SC_dict = mllm_output_to_dict(result_SC, give_up_parsing=guess_if_cannot_parse)
        PQ_dict = mllm_output_to_dict(result_PQ, give_up_parsing=guess_if_cannot_parse)
    if SC_dict == "rate_limit_exceeded" or PQ_dict == "rate_limit_exceeded":
        raise ValueError("rate_limit_exceeded")
    SC_score = min(SC_dict["score"])
    PQ_score = min(PQ_dict["score"])
    O_score = math.sqrt(SC_score * PQ_score)
    return [SC_score, PQ_score, O_score]


class OutOfAnswers(Exception):
    """The recorded answers ran out: the official loop would go on asking."""


def process_single_item(ask: Callable[[str], str], max_retries: int = 10000) -> list | None:
    """The driver's retry: a sample whose evaluation raises is evaluated again from the start (no sleeping here)."""
    for _ in range(max_retries):
        try:
            return evaluate(ask)
        except OutOfAnswers:
            return None
        except Exception:
            continue
    return None


def replay(attempts: list[tuple[str, str]]) -> Callable[[str], str]:
    """An ``ask`` that hands out recorded (SC, PQ) replies attempt by attempt; past the last: OutOfAnswers."""
    queue = {"SC": [a[0] for a in attempts], "PQ": [a[1] for a in attempts]}

    def ask(kind: str) -> str:
        if not queue[kind]:
            raise OutOfAnswers
        return queue[kind].pop(0)
    return ask


# -- the GPT backend and the driver --------------------------------------------------------------------------
def encode_jpeg(pil_image) -> str:
    from PIL import ImageOps

    image = ImageOps.exif_transpose(pil_image).convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue()).decode("utf-8")


def gpt_ask(url: str, key: str, text: str, images: list, model: str = "gpt-4.1", extra: dict | None = None) -> str:
    """One chat request as the GPT backend sends it (text, then each image as a JPEG data URL); "" on an error."""
    content = [{"type": "text", "text": text}]
    content += [{"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{encode_jpeg(im)}"}}
                for im in images]
    payload = {"model": model, "max_tokens": 1400, "messages": [{"role": "user", "content": content}], **(extra or {})}
    req = urllib.request.Request(url.rstrip("/") + "/chat/completions", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            data = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        data = json.loads(exc.read() or b"{}")
    try:
        return data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""


def score_layout(rows: list[dict], save_path: str, model_name: str, backbone: str, ask_factory: Callable,
                 sc_template: str, pq_prompt: str) -> None:
    """``test_gedit_score.py``: per group, every row whose two files exist is evaluated; CSVs under
    ``save_path/model_name/backbone/eval_results_new``. ``ask_factory(text, images)`` returns a reply."""
    from PIL import Image

    out_dir = os.path.join(save_path, model_name, backbone, "eval_results_new")
    os.makedirs(out_dir, exist_ok=True)
    for group in GROUPS:
        results = []
        for item in rows:
            if item["task_type"] != group:
                continue
            lang, key = item["instruction_language"], item["key"]
            folder = os.path.join(save_path, model_name, "fullset", group, lang)
            src_path, edited_path = os.path.join(folder, f"{key}_SRCIMG.png"), os.path.join(folder, f"{key}.png")
            if not (os.path.exists(src_path) and os.path.exists(edited_path)):
                continue
            source = Image.open(src_path)
            edited = Image.open(edited_path).convert("RGB").resize((source.size[0], source.size[1]))
            sc_text = sc_template.replace("<instruction>", item["instruction"])

            def ask(kind, sc_text=sc_text, source=source, edited=edited):
                return ask_factory(sc_text, [source, edited]) if kind == "SC" else ask_factory(pq_prompt, [edited])

            scores = process_single_item(ask)
            if scores is None:
                continue
            results.append({"source_image": src_path, "edited_image": edited_path,
                            "instruction": item["instruction"], "sementics_score": scores[0],
                            "quality_score": scores[1], "intersection_exist": item["Intersection_exist"],
                            "instruction_language": lang})
        pd.DataFrame(results, columns=["source_image", "edited_image", "instruction", "sementics_score",
                                       "quality_score", "intersection_exist", "instruction_language"]).to_csv(
            os.path.join(out_dir, f"{model_name}_{group}_gpt_score.csv"), index=False)


# -- calculate_statistics.py ---------------------------------------------------------------------------------
def analyze_scores(save_path_dir: str, model_name: str, language: str) -> dict:
    """Per group and averaged SC/PQ/O, full set and intersection, as ``calculate_statistics.py`` computes them."""
    semantics, quality, overall = defaultdict(dict), defaultdict(dict), defaultdict(dict)
    semantics_i, quality_i, overall_i = defaultdict(dict), defaultdict(dict), defaultdict(dict)
    for group_name in GROUPS:
        df = pd.read_csv(os.path.join(save_path_dir, f"{model_name}_{group_name}_gpt_score.csv"))
        s, q, o, si, qi, oi = [], [], [], [], [], []
        for _, row in df.iterrows():
            if row["instruction_language"] != language:
                continue
            overall_score = math.sqrt(row["sementics_score"] * row["quality_score"])
            s.append(row["sementics_score"])
            q.append(row["quality_score"])
            o.append(overall_score)
            if row["intersection_exist"]:
                si.append(row["sementics_score"])
                qi.append(row["quality_score"])
                oi.append(overall_score)
        with np.errstate(all="ignore"):
            semantics[model_name][group_name], quality[model_name][group_name] = np.mean(s), np.mean(q)
            overall[model_name][group_name] = np.mean(o)
            semantics_i[model_name][group_name], quality_i[model_name][group_name] = np.mean(si), np.mean(qi)
            overall_i[model_name][group_name] = np.mean(oi)
    out = {}
    for name, table in (("SC", semantics), ("PQ", quality), ("O", overall), ("SC_i", semantics_i),
                        ("PQ_i", quality_i), ("O_i", overall_i)):
        out[name] = {g: float(table[model_name][g]) for g in GROUPS}
        out[name]["avg"] = float(np.mean([table[model_name][g] for g in GROUPS]))
    return out


def read_rows_csv(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))
