"""`python -m grader` is `failfast`."""

from grader.cli import main

main()
