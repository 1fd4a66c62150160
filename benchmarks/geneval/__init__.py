"""GenEval (Ghosh et al., NeurIPS 2023): object-focused text-to-image alignment, scored by the official rules."""
