"""``--backend docker``: the learner's image, the stub and Redis in containers.

Owns: ``stack`` (DockerStack, its options and limits, sweeping what dead runs left). The only
place that imports the docker SDK.
"""
