"""Entry point for ``python -m core`` (the same as the ``aw`` console command)."""

from core.cli import run

run()
