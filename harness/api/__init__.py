"""The contracts between the engine and what plugs into it: models, benchmarks, scorers, report sections.

A plugin imports what it needs from here (``from harness.api import Benchmark, Plan, WorkUnit, opt``).
"""

from harness.api.benchmark import (
    Benchmark,
    Discovery,
    Generated,
    Plan,
    Sample,
    ScorePlan,
    Stage,
    WorkUnit,
)
from harness.api.model import ImageModel
from harness.api.reporting import Paired, PublishedTable, Reportable, RunData, Section
from harness.api.scorer import Scorer
from harness.core.options import Check, opt

__all__ = ["Benchmark", "Check", "Discovery", "Generated", "ImageModel", "Paired", "Plan", "PublishedTable",
           "Reportable", "RunData", "Sample", "ScorePlan", "Scorer", "Section", "Stage", "WorkUnit", "opt"]
