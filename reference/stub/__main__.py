"""``python -m reference.stub``: run the reference payments stub."""

from reference.stub.cli import main

raise SystemExit(main())
