"""``python -m bilrp``: the ``bilrp`` command line."""

from .cli import main

raise SystemExit(main())
