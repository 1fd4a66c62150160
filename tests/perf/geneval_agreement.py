"""GenEval decisions, ours against the official decision code, on the property test's random detection sets.

    python tests/perf/geneval_agreement.py [--cases 6000] [--seed N] [--reference-python PYTHON]

Prints the agreement figures (cases; verdicts, reasons modulo relation order, details that agree). By default the
official transcription (``tests/benchmarks/geneval/official_decisions.py``) runs under this Python with numpy's
SIMD sorts disabled; ``--reference-python`` runs it under another one as it is, e.g. a virtual environment with
numpy 1.23.x, the official pin (``python -m venv /tmp/np123 && /tmp/np123/bin/pip install numpy==1.23.5``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--reference-python", default=sys.executable)
    args = parser.parse_args()
    path = ROOT / "tests" / "benchmarks" / "geneval" / "test_official_agreement.py"
    spec = importlib.util.spec_from_file_location("test_official_agreement", path)
    t = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(t)
    start = time.perf_counter()
    cases = t.generate_cases(args.cases, t.SEED if args.seed is None else args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        official = t.official_results(cases, Path(tmp), args.reference_python)
    figures = t.agreement(official, [t.ours(c) for c in cases])
    figures["reference_python"] = args.reference_python
    figures["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
