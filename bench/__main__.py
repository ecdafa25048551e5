"""``python -m bench``: the same as ``attune bench``."""

from bench.cli import main

main()
