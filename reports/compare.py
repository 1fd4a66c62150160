"""Paired statistics for regression gating: plain data in, plain data out (no torch, no I/O).

A change is flagged only when it is both larger than a threshold *and* significant (docs/statistics.md): GenEval
by a paired bootstrap over prompts (all images of a prompt resampled together, tags kept)
with McNemar's exact test on per-image verdicts as a cross-check; judge scores by a paired bootstrap;
latency by Mann-Whitney U on raw repeats plus a ratio factor (asv style).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

#: asv-style marks: "+" flagged regression, "-" significant improvement, "~" change not significant,
#: "=" no change, "x" not comparable
MARKS = {"regression": "+", "improvement": "-", "not significant": "~", "same": "=", "not comparable": "x"}


@dataclass(frozen=True)
class Comparison:
    """One metric of BASE vs NEW."""

    metric: str
    base: float
    new: float
    delta: float
    ci95: tuple[float, float] | None
    p_value: float | None
    threshold: float
    higher_is_better: bool
    verdict: str
    n: int

    @property
    def mark(self) -> str:
        return MARKS[self.verdict]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mark": self.mark}


def verdict(delta: float, significant: bool, threshold: float, higher_is_better: bool) -> str:
    """Flag a regression only when the change is worse by more than ``threshold`` and significant."""
    worse = -delta if higher_is_better else delta
    if delta == 0:
        return "same"
    if not significant:
        return "not significant"
    if worse >= threshold:
        return "regression"
    if -worse >= threshold:
        return "improvement"
    return "not significant"


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (pass→fail ``b``, fail→pass ``c``)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def stratified_paired(
    metric: str,
    base: Mapping[str, Mapping[str, float]],
    new: Mapping[str, Mapping[str, float]],
    subsets: Mapping[str, str],
    *,
    threshold: float = 0.01,
    alpha: float = 0.05,
    samples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Overall of NEW minus BASE on the items and samples both runs have, overall = mean of subset means.

    ``base[item][sample] = value`` (GenEval: 1.0 for a correct image); ``subsets[item] = subset`` (tag). A
    subset's score is its samples' mean. The bootstrap resamples items within each subset (paired: the same
    items for both runs); p is the two-sided bootstrap p-value, and for 0/1 values McNemar's exact test on
    every sample is folded in (both must agree).
    """
    import numpy as np

    items = sorted(set(base) & set(new))
    by_subset: dict[str, list[str]] = {}
    for p in items:
        by_subset.setdefault(subsets[p], []).append(p)
    pairs = {p: sorted(set(base[p]) & set(new[p])) for p in items}
    binary = all(v in (0, 1) for p in items for run in (base, new) for v in run[p].values())
    rng = np.random.default_rng(seed)
    deltas = np.zeros(samples)
    base_overall, new_overall = [], []
    b = c = 0
    for subset_items in by_subset.values():
        bc = np.array([sum(base[p][i] for i in pairs[p]) for p in subset_items], dtype=float)
        nc = np.array([sum(new[p][i] for i in pairs[p]) for p in subset_items], dtype=float)
        n_img = np.array([len(pairs[p]) for p in subset_items], dtype=float)
        base_overall.append(bc.sum() / n_img.sum())
        new_overall.append(nc.sum() / n_img.sum())
        idx = rng.integers(0, len(subset_items), size=(samples, len(subset_items)))
        deltas += (nc[idx].sum(1) - bc[idx].sum(1)) / n_img[idx].sum(1)
        for p in subset_items:
            for i in pairs[p]:
                b += bool(base[p][i]) and not new[p][i]
                c += bool(new[p][i]) and not base[p][i]
    deltas /= len(by_subset)
    b_mean, n_mean = float(np.mean(base_overall)), float(np.mean(new_overall))
    delta = n_mean - b_mean
    lo, hi = (float(x) for x in np.percentile(deltas, [2.5, 97.5]))
    p = float(min(1.0, 2 * min((deltas <= 0).mean(), (deltas >= 0).mean())))
    if binary:
        p = max(p, mcnemar_exact(b, c))
    significant = p < alpha and not lo <= 0 <= hi
    return Comparison(metric, b_mean, n_mean, delta, (lo, hi), p, threshold, True,
                      verdict(delta, significant, threshold, True), sum(len(v) for v in pairs.values()))


def paired_mean(
    metric: str,
    base: Mapping[str, float],
    new: Mapping[str, float],
    *,
    threshold: float = 0.1,
    higher_is_better: bool = True,
    alpha: float = 0.01,
    samples: int = 2000,
    seed: int = 0,
    min_n: int = 10,
) -> Comparison:
    """Mean of NEW minus BASE over the shared items (e.g. judge scores per case), paired bootstrap.

    Fewer than ``min_n`` pairs never count as significant: a bootstrap over a handful of items is not
    evidence (its p-value can be 0 for two items that both went down)."""
    import numpy as np

    keys = sorted(set(base) & set(new))
    if not keys:
        return Comparison(metric, math.nan, math.nan, math.nan, None, None, threshold, higher_is_better,
                          "not comparable", 0)
    diff = np.array([new[k] - base[k] for k in keys], dtype=float)
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(1)
    lo, hi = (float(x) for x in np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)]))
    p = float(min(1.0, 2 * min((boot <= 0).mean(), (boot >= 0).mean())))
    delta = float(diff.mean())
    significant = p < alpha and not lo <= 0 <= hi and len(keys) >= min_n
    return Comparison(metric, float(np.mean([base[k] for k in keys])), float(np.mean([new[k] for k in keys])),
                      delta, (lo, hi), p, threshold, higher_is_better,
                      verdict(delta, significant, threshold, higher_is_better), len(keys))


def latency(
    metric: str,
    base: Sequence[float],
    new: Sequence[float],
    *,
    factor: float = 1.10,
    p_threshold: float = 0.002,
) -> Comparison:
    """Latency repeats (lower is better): flagged when median(new)/median(base) > ``factor`` and the
    Mann-Whitney U test gives p < ``p_threshold`` (asv's defaults)."""
    import numpy as np
    from scipy.stats import mannwhitneyu

    if len(base) < 2 or len(new) < 2:
        return Comparison(metric, math.nan, math.nan, math.nan, None, None, factor, False, "not comparable", 0)
    b, n = float(np.median(base)), float(np.median(new))
    p = float(mannwhitneyu(base, new, alternative="two-sided").pvalue)
    ratio = n / b if b else math.inf
    if p >= p_threshold:
        result = "not significant" if ratio != 1 else "same"
    elif ratio > factor:
        result = "regression"
    elif ratio < 1 / factor:
        result = "improvement"
    else:
        result = "not significant"
    return Comparison(metric, b, n, n - b, None, p, factor, False, result, min(len(base), len(new)))
