"""failfast: grades 'Make every dependency call fail fast' from what reaches the provider."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("failfast-grader")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
