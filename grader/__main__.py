"""`python -m grader` is `failfast`."""

from grader.cli.app import main

main()
