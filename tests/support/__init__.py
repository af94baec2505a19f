"""Helpers shared by the tests (no test module imports another; tests/test_imports.py checks)."""
