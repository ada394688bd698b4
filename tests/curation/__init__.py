"""Tests of the curation stage (a package, so module names do not clash with tests/test_*.py)."""
