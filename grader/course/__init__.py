"""Grading a class: the course file, batches of submissions, the gradebook.

Owns: ``file`` (the course file: points and visibility), ``batch`` (``failfast grade``: one
grader process per submission, shards, resume) and ``gradebook`` (the gradebook CSV, the class
summary and page, rebuilt from the submissions' JSON reports) and ``reuse`` (``--db``: a
submission's earlier grading reused from the history, and the class exported from it).

May import: the model, ``grader.learner``, ``grader.engine.registry``, ``grader.process``, the
formats and ``grader.history``.
"""
