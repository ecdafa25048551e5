"""``python -m bench.relevance movielens DIR``: the same as ``attune eval``."""

from bench.relevance.cli import eval_app

eval_app(prog_name="attune eval")
