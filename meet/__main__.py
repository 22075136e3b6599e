"""Allow ``python -m meet``."""

from meet.cli import main

raise SystemExit(main())
