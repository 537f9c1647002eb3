"""Grading a class: the course file, batches of submissions, the gradebook.

Owns: ``file`` (the course file: points and visibility) and ``batch`` (``failfast grade``,
shards, the gradebook CSV, the class summary and page).

May import: the model, ``grader.learner``, ``grader.engine.registry`` and the formats.
"""
