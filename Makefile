# Developer shortcuts. Each target runs in the active virtual environment (`make dev` makes one).
.PHONY: dev lint fast tests

dev:  ## a virtual environment with the package and its dev tools
	python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[dev]'

lint:  ## ruff, ruff format, mypy --strict and the import contracts: what CI's lint tests check
	ruff check .
	ruff format --check .
	mypy
	lint-imports

fast:  ## the unit tests, without the whole-milestone gradings (about a minute and a half)
	python -m pytest -m "not slow"

tests:  ## the README's test command: set up the machine, then the whole suite (about 15 min)
	bash scripts/test.sh
