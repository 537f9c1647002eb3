"""What runs the learner's code: the protocols every backend meets, one sub-package each.

``base`` holds the protocols (Stack, ApiInstance, Edge, StartStack); ``local`` runs processes
on loopback ports (``--backend local``), ``docker`` runs containers (``--backend docker``).

May import: the model, ``grader.learner``, ``grader.process`` and ``grader.engine.stubclient``.
Never a format or the CLI; nothing outside ``backends/<name>/`` imports a backend's internals.
"""
