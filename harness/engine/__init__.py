"""The engine: the run lifecycle every benchmark shares (``evaluate``, ``score``, ``merge``)."""
