"""The test suite: `python -m pytest` from the repository root."""
