"""Reports, paired comparisons and regression gating, generic over every benchmark's report contract."""
