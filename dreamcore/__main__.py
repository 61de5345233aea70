"""`python -m dreamcore` is the `dreamcore` command."""

from .cli import main

raise SystemExit(main())
