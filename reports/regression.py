"""BASE vs NEW on the same items and seeds: refuse what is not comparable, then paired tests per metric.

Generic over every benchmark: the benchmark's :class:`~harness.api.reporting.Reportable` gives the per-item
paired scores, how they are compared (``comparison``), the direction and the default threshold; the
statistics are in :mod:`reports.compare` (docs/statistics.md).
"""

from __future__ import annotations

from harness.api.reporting import Paired, Reportable, RunData
from harness.core.errors import HarnessError
from harness.reports.compare import Comparison, latency, paired_mean, stratified_paired, verdict


def reportable(name: str) -> type[Reportable]:
    """The report side of a benchmark, from the registry."""
    from harness.registry import registry

    cls = registry("benchmarks").load(name)
    if not (isinstance(cls, type) and issubclass(cls, Reportable)):
        raise HarnessError(f"benchmark {name!r} has no report support (not a harness.api Reportable)")
    return cls


def check_comparable(base: RunData, new: RunData, *, intersection: bool = False) -> list[str]:
    """Errors (or, with ``intersection``, notes) when benchmark, item set or scorer differ."""
    if base.benchmark != new.benchmark:
        raise HarnessError(f"{base.out} is {base.benchmark} but {new.out} is {new.benchmark}: different "
                           "benchmarks are never compared")
    cls = reportable(base.benchmark)
    a, b = cls.identity(base), cls.identity(new)
    diffs = [f"{k} ({a[k]} vs {b[k]})" for k in ("prompts", "label", "scorer") if a.get(k) != b.get(k)]
    if diffs and not intersection:
        raise HarnessError(f"{base.out} and {new.out} differ in {', '.join(diffs)}; numbers from different prompt "
                           "sets or scorers are not comparable. Pass --intersection to compare the shared "
                           "prompts anyway (said in the report), or rescore one run with the other's scorer")
    return [f"compared on the intersection only; runs differ in {', '.join(diffs)}"] if diffs else []


def compare_runs(base: RunData, new: RunData, *, threshold: float | None = None, intersection: bool = False,
                 seed: int = 0) -> tuple[list[Comparison], list[str]]:
    """Per-metric comparisons (overall first, then each subset) and notes.

    ``threshold`` defaults to the benchmark's own (``Reportable.threshold``)."""
    notes = check_comparable(base, new, intersection=intersection)
    cls = reportable(base.benchmark)
    limit = cls.threshold if threshold is None else threshold
    a, b = cls.paired_scores(base), cls.paired_scores(new)
    if cls.comparison == "latency":
        return compare_latency(base, new, a, b, factor=limit), notes
    if cls.comparison == "paired-mean":
        return compare_means(cls, base, new, a, b, threshold=limit, seed=seed), notes
    return compare_stratified(cls, base, new, a, b, threshold=limit, intersection=intersection, seed=seed,
                              notes=notes), notes


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error over the subsets)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _adjusted(per_subset: list[Comparison], alpha: float, threshold: float, min_n: int = 0) -> list[Comparison]:
    """The subsets' comparisons re-judged with Holm-adjusted p-values."""
    out = []
    for c, p in zip(per_subset, holm([c.p_value if c.p_value is not None else 1.0 for c in per_subset]),
                    strict=True):
        significant = p < alpha and c.ci95 is not None and not c.ci95[0] <= 0 <= c.ci95[1] and c.n >= min_n
        out.append(Comparison(c.metric, c.base, c.new, c.delta, c.ci95, p, c.threshold, c.higher_is_better,
                              verdict(c.delta, significant, threshold, c.higher_is_better), c.n))
    return out


def compare_stratified(cls: type[Reportable], base: RunData, new: RunData, a: Paired, b: Paired, *,
                       threshold: float, intersection: bool, seed: int, notes: list[str]) -> list[Comparison]:
    """Overall = mean of subset means, paired bootstrap over items stratified by subset (GenEval's rule)."""
    bv = {item: values for item, (_, values) in a.items.items()}
    nv = {item: values for item, (_, values) in b.items.items()}
    subsets = {item: subset for item, (subset, _) in a.items.items()}
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
    out = [stratified_paired(f"{cls.name}_overall", bv, nv, subsets, threshold=threshold, alpha=cls.alpha, seed=seed)]
    per_subset = []
    for subset in sorted({subsets[p] for p in shared}):
        keep = {p for p in shared if subsets[p] == subset}
        per_subset.append(stratified_paired(f"{cls.name}_{subset}", {p: bv[p] for p in keep},
                                            {p: nv[p] for p in keep}, {p: subset for p in keep},
                                            threshold=threshold, alpha=cls.alpha, seed=seed))
    return out + _adjusted(per_subset, cls.alpha, threshold)


def compare_means(cls: type[Reportable], base: RunData, new: RunData, a: Paired, b: Paired, *, threshold: float,
                  seed: int, min_n: int = 10) -> list[Comparison]:
    """Paired bootstrap of per-item means, overall and per subset (Holm): judge scores per case."""
    def means(paired: Paired) -> dict[str, float]:
        return {item: sum(v.values()) / len(v) for item, (_, v) in paired.items.items() if v}

    am, bm = means(a), means(b)
    subsets = {item: subset for item, (subset, _) in a.items.items()}
    if not set(am) & set(bm):
        raise HarnessError(f"{base.out} and {new.out} have no item scored in both; nothing to compare")
    out = [paired_mean(f"{cls.name}_overall", am, bm, threshold=threshold, higher_is_better=cls.higher_is_better,
                       alpha=cls.alpha, seed=seed, min_n=min_n)]
    per_subset = []
    for subset in sorted({subsets[i] for i in set(am) & set(bm)}):
        keep = [i for i in am if subsets.get(i) == subset and i in bm]
        per_subset.append(paired_mean(f"{cls.name}_{subset}", {i: am[i] for i in keep}, {i: bm[i] for i in keep},
                                      threshold=threshold, higher_is_better=cls.higher_is_better, alpha=cls.alpha,
                                      seed=seed, min_n=min_n))
    return out + _adjusted(per_subset, cls.alpha, threshold, min_n)


def compare_latency(base: RunData, new: RunData, a: Paired, b: Paired, *, factor: float) -> list[Comparison]:
    """Per configuration both measured: Mann-Whitney U on the raw samples and a ratio factor (lower is better)."""
    shared = sorted(set(a.items) & set(b.items))
    if not shared:
        raise HarnessError(f"{base.out} and {new.out} measured no common configuration "
                           "(variant, runtime, backend, precision, steps, resolution)")
    return [latency(f"e2e_ms {label}", list(a.items[label][1].values()), list(b.items[label][1].values()),
                    factor=factor) for label in shared]
