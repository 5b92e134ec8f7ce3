"""``python -m xaibench`` is the ``xaibench`` command."""

from xaibench.cli import console

raise SystemExit(console())
