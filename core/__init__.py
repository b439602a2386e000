"""Anomaly Workbench core: datasets, models, runs, evaluation, inference and similarity search.

A plain library (no Streamlit): the CLI (``python -m core``) and the dashboard pages both call it.
"""

__version__ = "0.1.0"
