"""``python -m services.common.evaluation movielens DIR``: the same as ``attune eval``."""

from services.common.evaluation.cli import eval_app

eval_app(prog_name="attune eval")
