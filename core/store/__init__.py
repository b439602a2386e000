"""The store: the run registry (SQLite, ``runs``) and a run's files on disk (``artifacts``).

Layer 2 of core (``pyproject.toml``'s import-linter contract): imports only the ground floor (``core.config``,
``core.errors``, ``core.runtime``). Other layers ask the registry through its public methods; nobody runs SQL on its
connection.
"""
