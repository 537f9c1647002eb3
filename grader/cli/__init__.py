"""The command line: the typer app, one module per group of commands, where a report goes.

Owns: ``app`` (the typer app, its entry point ``main``, what the commands share), ``check``
(``failfast check``), ``grade`` (``failfast grade``, ``gradebook merge``, ``gradebook export``),
``classhistory`` (a class's history: reuse and export), ``history`` (recording a grading,
``failfast progress``), ``info``
(``--version``, ``doctor``, ``list``, ``explain``, ``stub``), ``output`` (the terminal, report
files, GitHub Actions), ``doctor`` (what this machine lacks) and ``machine`` (what the process
needs before any command: a working directory, a place for matplotlib's caches). The top of the
import graph: it may import anything; nothing imports it.

Each command module adds its commands to ``app.app`` when it is imported; importing them here,
with the package, gives ``app`` every command whichever module of the CLI is imported first.
"""

from grader.cli import check, grade, history, info

__all__ = ["check", "grade", "history", "info"]
