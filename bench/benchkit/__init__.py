"""Helpers imported by the peer apps *inside each peer's virtualenv*.

Standard library only: every peer venv gets ``bench/`` on ``PYTHONPATH`` and imports
``benchkit`` from there, so nothing here may depend on a third-party package.
"""

from benchkit.ledger import now, record

__all__ = ["now", "record"]
