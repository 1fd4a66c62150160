"""Protocol peers for tests: local servers that speak real wire protocols."""
