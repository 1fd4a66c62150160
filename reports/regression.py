"""BASE vs NEW on the same prompts and seeds: refuse what is not comparable, then paired tests per metric."""

from __future__ import annotations

from harness.errors import HarnessError
from reports.compare import Comparison, geneval_paired, latency, paired_mean, verdict
from reports.runs import RunData, geneval_verdicts, imgedit_case_scores, latency_samples


def check_comparable(base: RunData, new: RunData, *, intersection: bool = False) -> list[str]:
    """Errors (or, with ``intersection``, notes) when benchmark, prompt set or scorer differ."""
    a, b = base.identity(), new.identity()
    if a["benchmark"] != b["benchmark"]:
        raise HarnessError(f"{base.out} is {a['benchmark']} but {new.out} is {b['benchmark']}: different "
                           "benchmarks are never compared")
    diffs = [f"{k} ({a[k]} vs {b[k]})" for k in ("prompts", "label", "scorer") if a[k] != b[k]]
    if diffs and not intersection:
        raise HarnessError(f"{base.out} and {new.out} differ in {', '.join(diffs)}; numbers from different prompt "
                           "sets or scorers are not comparable. Pass --intersection to compare the shared "
                           "prompts anyway (said in the report), or rescore one run with the other's scorer")
    return [f"compared on the intersection only; runs differ in {', '.join(diffs)}"] if diffs else []


def compare_runs(base: RunData, new: RunData, *, threshold: float = 0.01, intersection: bool = False,
                 seed: int = 0) -> tuple[list[Comparison], list[str]]:
    """Per-metric comparisons (GenEval overall and per tag) and notes."""
    notes = check_comparable(base, new, intersection=intersection)
    if base.benchmark == "device":
        return compare_latency(base, new), notes
    if base.benchmark == "imgedit":
        return compare_judge_scores(base, new, threshold=0.1 if threshold == 0.01 else threshold, seed=seed), notes
    if base.benchmark != "geneval":
        raise HarnessError(f"compare: {base.benchmark} has no paired comparison yet (GenEval only)")
    bv, tags, _ = geneval_verdicts(base)
    nv, _, _ = geneval_verdicts(new)
    shared = set(bv) & set(nv)
    if not shared:
        raise HarnessError(f"{base.out} and {new.out} share no prompts; nothing to compare")
    dropped = len(set(bv) ^ set(nv))
    if dropped:
        if not intersection:
            raise HarnessError(f"{base.out} and {new.out} have different prompts ({dropped} not in both); "
                               "pass --intersection to compare the shared ones")
        notes.append(f"{dropped} prompt(s) not in both runs were left out")
    bv, nv = {p: bv[p] for p in shared}, {p: nv[p] for p in shared}
    out = [geneval_paired(bv, nv, tags, threshold=threshold, seed=seed)]
    per_tag = []
    for tag in sorted({tags[p] for p in shared}):
        keep = {p for p in shared if tags[p] == tag}
        per_tag.append((tag, geneval_paired({p: bv[p] for p in keep}, {p: nv[p] for p in keep},
                                            {p: tag for p in keep}, threshold=threshold, seed=seed)))
    adjusted = holm([c.p_value or 1.0 for _, c in per_tag])
    for (tag, c), p in zip(per_tag, adjusted, strict=True):
        significant = p < 0.05 and c.ci95 is not None and not c.ci95[0] <= 0 <= c.ci95[1]
        out.append(Comparison(f"geneval_{tag}", c.base, c.new, c.delta, c.ci95, p, c.threshold, True,
                              verdict(c.delta, significant, threshold, True), c.n))
    return out, notes


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error over the tags)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def compare_latency(base: RunData, new: RunData, *, factor: float = 1.10) -> list[Comparison]:
    """Per device configuration both sweeps measured: Mann-Whitney U on raw iterations + ratio factor."""
    a, b = latency_samples(base), latency_samples(new)
    shared = sorted(set(a) & set(b))
    if not shared:
        raise HarnessError(f"{base.out} and {new.out} measured no common configuration "
                           "(variant, runtime, backend, precision, steps, resolution)")
    return [latency(f"e2e_ms {label}", a[label], b[label], factor=factor) for label in shared]


def compare_judge_scores(base: RunData, new: RunData, *, threshold: float = 0.1, seed: int = 0) -> list[Comparison]:
    """ImgEdit: paired bootstrap on per-case mean judge scores (1-5), overall and per edit type (Holm)."""
    a, types = imgedit_case_scores(base)
    b, _ = imgedit_case_scores(new)
    if not set(a) & set(b):
        raise HarnessError(f"{base.out} and {new.out} have no case scored in both; nothing to compare")
    out = [paired_mean("imgedit_overall", a, b, threshold=threshold, seed=seed)]
    per_type = []
    for t in sorted({types[c] for c in set(a) & set(b)}):
        keep = [c for c in a if types.get(c) == t and c in b]
        per_type.append(paired_mean(f"imgedit_{t}", {c: a[c] for c in keep}, {c: b[c] for c in keep},
                                    threshold=threshold, seed=seed))
    adjusted = holm([c.p_value if c.p_value is not None else 1.0 for c in per_type])
    for c, p in zip(per_type, adjusted, strict=True):
        significant = p < 0.01 and c.ci95 is not None and not c.ci95[0] <= 0 <= c.ci95[1]
        out.append(Comparison(c.metric, c.base, c.new, c.delta, c.ci95, p, c.threshold, True,
                              verdict(c.delta, significant, threshold, True), c.n))
    return out
