"""What runs the learner's code: the protocols every backend meets, one sub-package each.

``base`` holds the protocols (Stack, ApiInstance, Edge, StartStack) and the registry
(``backend_names``, ``get_backend``: a Backend's name, options, starter and doctor
requirements); ``services`` what every backend does alike (the stub's ready line, Redis's PONG,
GET /healthz, free loopback ports). ``local`` runs processes on loopback ports (``--backend
local``), ``docker`` runs containers (``--backend docker``); each defines ``BACKEND`` in its
``__init__``. A new backend is a package here and a line in ``base``'s registry.

May import: the model, ``grader.learner``, ``grader.process`` and ``grader.stubclient``.
Never a format or the CLI; nothing outside ``backends/<name>/`` imports a backend's internals,
and one backend never imports another.
"""
