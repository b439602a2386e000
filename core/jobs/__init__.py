"""Jobs: the run queue and its local worker (``queue``), runs on a Ray cluster (``cluster``) and the launch form's
logic (``launch``).

Layer 7 of core: imports ``core.engine`` and everything below it. ``from core.jobs import queue`` for submit/execute.
"""
