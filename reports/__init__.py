"""HTML/Markdown reports and nightly regression comparison (issue 6; not implemented yet)."""
