"""``python -m minitransfer.cli``: the same as the ``minitransfer`` command."""

import sys

from minitransfer.cli import entry

sys.exit(entry())
