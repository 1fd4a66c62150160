"""On-phone latency and memory sweeps over adb (issue 5; not implemented yet)."""
