"""Scorers shared by several benchmarks: CLIP models, OpenAI-compatible VLM judges."""
