"""This project's version (recorded with every run and result)."""

__version__ = "0.1.0"
