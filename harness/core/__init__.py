"""The core: pieces every other part of the harness uses and that import nothing else of ours."""
