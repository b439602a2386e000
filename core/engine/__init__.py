"""The engine: a run's fit, test, timing and indexing (``training``), metrics (``evaluation``), the fast predict path
(``inference``), latency (``latency``), OpenVINO export (``export``) and the cost estimate before launch (``estimate``).

Layer 6 of core: imports ``core.similarity`` and everything below it; never jobs, views or the CLI.
"""
