"""The milestone checks: ``m<N>.<name>`` lives in ``checks/m<N>_*.py`` as ``def <name>``.

The grader imports every module of this package (``grader.engine.registry.load("checks")``); a new
milestone's module needs no list here.
"""
