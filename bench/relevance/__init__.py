"""Relevance evaluation through the real system (``attune eval``).

- :mod:`.split`: the per-user split, the global time split and the held-out periods.
- :mod:`.metrics`: ranking metrics and bootstrap confidence intervals (pure, numpy).
- :mod:`.phases`: the evaluated users of a period and the lists each method gave them.
- :mod:`.methods`: the blend, the baselines, the ablations and the MMR probes.
- :mod:`.variants`: one user-model fold per candidate popularity half-life.
- :mod:`.loading`: producing events and waiting until they are folded.
- :mod:`.selection`: the weight grid and the choice of weights and half-life on validation.
- :mod:`.summary`: means with intervals, paired differences and the verdict.
- :mod:`.headroom`: what any ranking could reach on the split (outside the system).
- :mod:`.runner`: the global protocol: drives the embedded stack, the consumers and the
  query engine.
- :mod:`.peruser`: the per-user protocol, on an embedded stack of its own.
- :mod:`.batch`: popularity, item k-NN, EASE and iALS in numpy and scipy.
- :mod:`.references`: those fitted on the per-user split, settings chosen on validation.
- :mod:`.report`: the Markdown report and the JSON of the results
  (:mod:`.peruser_report`: its per-user section).
- :mod:`.cli`: the ``eval_app`` typer app (``attune eval movielens DIR``).

Importing this package starts nothing and loads no data.
"""
