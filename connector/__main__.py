"""Run the command-line interface with ``python -m connector``."""

from __future__ import annotations

from connector.cli import main

raise SystemExit(main())
