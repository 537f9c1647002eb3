"""The grading engine: checks, their registry, the runner, and what a check works with.

Owns: ``registry`` (the ``@check`` decorator and the catalog), ``runner`` (runs checks in
dependency order, bounded, with eager checks), ``context`` (what a check gets), ``noise`` (the
machine's own lateness), ``driver`` (checkouts against the learner's API), ``figures``,
``stubclient`` (the reference stub's admin API) and ``k6``, with ``k6imports`` and ``jsscan`` (a k6
script's imports, found by lexing, never fetched).

May import: the model (``grader.model``, ``grader.errors``, ``grader.lines``, ``grader.paths``),
``grader.learner``, ``grader.process`` and ``grader.backends.base``. Never a backend's own package,
a format or the CLI.
"""
