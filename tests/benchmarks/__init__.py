"""Benchmarks (``nox -s bench``); see ``run.py``. Not collected by pytest."""
