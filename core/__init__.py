"""Anomaly Workbench core: datasets, models, runs, evaluation, inference and similarity search.

A plain library (no Streamlit): the CLI (``aw``, ``python -m core``) and the dashboard pages both call it.

Its sub-packages are its layers, top to bottom; a layer imports only the layers below it (checked by import-linter,
``pyproject.toml``)::

    cli/         the command line
    views/       view-models for pages and reports
    jobs/        queue, local worker, Ray cluster runner, launch-form logic
    engine/      training, evaluation, inference, latency, export, estimate
    similarity/  embeddings, vector store
    models/      registry, model families, weights, coreset, cost types
    data/        images, datasets, demo data, importing
    store/       run registry, a run's files
    config.py, errors.py, runtime.py   the ground floor
"""

__version__ = "0.1.0"
