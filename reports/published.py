"""Published numbers to show beside ours, with their sources (from shared/specs geneval.md §11,
architecture.md §6.3 and imgedit.md). "P" = primary source (official repo or project page), "S" =
secondary (third-party reproduction of a paper table). Never mixed with our numbers: a separate table.
"""

from __future__ import annotations

GENEVAL_COLUMNS = ("overall", "single_object", "two_object", "counting", "colors", "position", "color_attr")

#: model -> (overall, single, two, counting, colors, position, color_attr, source); None = not published
GENEVAL: dict[str, tuple[float | None, ...] | tuple] = {
    "SD v1.5": (0.43, 0.97, 0.38, 0.35, 0.76, 0.04, 0.06, "P: GenEval README"),
    "SD v2.1": (0.50, 0.98, 0.51, 0.44, 0.85, 0.07, 0.17, "P: GenEval README"),
    "SDXL": (0.55, 0.98, 0.74, 0.39, 0.85, 0.15, 0.23, "P: GenEval README"),
    "IF-XL": (0.61, 0.97, 0.74, 0.66, 0.81, 0.13, 0.35, "P: GenEval README"),
    "PixArt-α": (0.48, 0.98, 0.50, 0.44, 0.80, 0.08, 0.07, "S: many tables agree"),
    "SD3-Medium (2B)": (0.62, 0.98, 0.74, 0.63, 0.67, 0.34, 0.36, "S: SANA/Janus-Pro lineage tables"),
    "SD3.5-Large": (0.71, 0.98, 0.89, 0.73, 0.83, 0.34, 0.47, "S"),
    "FLUX.1-dev": (0.66, 0.98, 0.81, 0.74, 0.79, 0.22, 0.45, "S: Janus-Pro lineage"),
    "FLUX.1-schnell": (0.71, 0.99, 0.92, 0.73, 0.78, 0.28, 0.54, "S"),
    "SANA-0.6B": (0.64, 0.99, 0.76, 0.64, 0.88, 0.18, 0.39, "S: SANA paper values"),
    "SANA-1.6B": (0.66, 0.99, 0.77, 0.62, 0.88, 0.21, 0.47, "S"),
    "DALL-E 3": (0.67, 0.96, 0.87, 0.47, 0.83, 0.43, 0.45, "S"),
    "SnapGen (0.38B)": (0.66, 1.00, 0.84, 0.60, 0.88, 0.18, 0.45,
                        "overall P: snap-research.github.io/snapgen; per-tag S"),
    "SnapGen++ small (0.4B)": (0.70, None, None, None, None, None, None, "P: project page"),
    "JuZhou 1.0 (0.387B)": (0.69, 0.99, 0.87, 0.61, 0.88, 0.24, 0.55, "S: self-reported README"),
    "DreamLite (0.39B)": (0.72, None, None, None, None, None, None,
                          "P: arXiv 2603.28713 abstract; per-tag not published; base vs mobile not stated"),
}

#: ImgEdit overall (GPT-4.1-judged leaderboard unless noted) -> (score, source)
IMGEDIT: dict[str, tuple[float, str]] = {
    "DreamLite (0.39B)": (4.11, "P: DreamLite README; judge not stated, not comparable to the GPT-4.1 board"),
    "FLUX.1 Kontext": (3.76, "P: DreamLite README table"),
    "BAGEL": (3.42, "P: DreamLite README table"),
    "OmniGen2": (3.44, "P: DreamLite README table"),
    "LongCat-Image-Edit": (4.49, "P: DreamLite README table"),
    "VIBE": (3.85, "P: DreamLite README table"),
}

#: on-device latency claims -> (claim, source)
LATENCY: dict[str, tuple[str, str]] = {
    "DreamLite mobile, Xiaomi 14": ("< 1 s at 1024², 4 steps (W8A8, text embeddings precomputed)",
                                    "P: abstract; details secondary (press)"),
    "DreamLite, iPhone 17 Pro": ("~3 s at 1024², fully on device", "P: project page"),
    "SnapGen, iPhone 16 Pro Max": ("~1.4 s at 1024², 4 steps", "P: SnapGen paper"),
    "SnapGen++ 0.4B, iPhone 16 Pro Max": ("1.8 s at 1024², 4 steps", "P: project page"),
}
