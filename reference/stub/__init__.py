"""The reference payments stub: a provider whose every misbehaviour is programmable.

Run it with ``python -m reference.stub`` (or ``failfast stub``); see ``faults.py`` for the fault
vocabulary and ``admin.py`` for the admin API.
"""

from reference.stub.cli import main
from reference.stub.server import StubConfig, serve

__all__ = ["StubConfig", "main", "serve"]
