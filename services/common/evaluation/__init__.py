"""Relevance evaluation through the real system (``attune eval``).

- :mod:`.split`: the global time split and the held-out periods.
- :mod:`.metrics`: ranking metrics and bootstrap confidence intervals (pure, numpy).
- :mod:`.runner`: drives the embedded stack, the consumers and the query engine.
- :mod:`.report`: the Markdown report and the JSON of the results.
- :mod:`.cli`: the ``eval_app`` typer app (``attune eval movielens DIR``).

Importing this package starts nothing and loads no data.
"""
