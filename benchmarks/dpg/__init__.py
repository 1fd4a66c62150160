"""DPG-Bench (docs/dpg.md)."""
