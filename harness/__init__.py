"""dreamlite-harness: evaluate and benchmark small on-device image models.

Importing this package is cheap: no torch, diffusers or transformers are imported until a model,
detector or scorer is actually loaded.
"""

from __future__ import annotations

__version__ = "0.1.0"
