"""The command line: the typer app, and where a report is delivered.

Owns: ``app`` (every command), ``output`` (the terminal, report files, GitHub Actions) and
``doctor``. The top of the import graph: it may import anything; nothing imports it.
"""
