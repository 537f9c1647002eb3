"""``--backend local``: the learner's API, the stub and Redis as processes on loopback ports.

Owns: ``stack`` (LocalStack) and ``edge`` (the learner's nginx.conf rewired to loopback).
"""
