"""Attune's benchmarks: each figure next to its raw limit, measured in the same run.

Benchmarks are not tests. ``attune bench`` (or ``python -m bench`` from the repository)
starts an embedded stack of its own (Tansu broker, private redis-server, Qdrant Edge
folders) on free loopback ports, runs the real services as ``attune run <service>``
subprocesses, drives them with a load generator in another process, prints a table and
writes a JSON file of results and PNG plots. See docs/benchmarks.md for the latest
figures and how each one is measured.

Modules, one per concern:

- :mod:`bench.cli`: the typer app (``bench_app``) and its options;
- :mod:`bench.run`: the orchestration of one run (the stack, the phases, the outputs);
- :mod:`bench.workloads`: MovieLens as items, events, HTTP bodies; synthetic scale items;
- :mod:`bench.services`: ``attune run <service>`` subprocesses and their /metrics;
- :mod:`bench.loadgen`: the HTTP load generator (``python -m bench.loadgen``), its client
  (:mod:`bench.httpclient`) and its open loop at a fixed rate (:mod:`bench.openloop`);
- :mod:`bench.wrk`: throughput at saturation with wrk;
- :mod:`bench.ceiling`: the bare ceiling of the recommendations (``python -m bench.ceiling``);
- :mod:`bench.served`: a query server under that load (open loop, wrk, the ceiling);
- :mod:`bench.embedder`, :mod:`bench.usermodel`, :mod:`bench.ingest`, :mod:`bench.query`,
  :mod:`bench.freshness`, :mod:`bench.memory`: one phase each (the query figures in
  :mod:`bench.query_figures`);
- :mod:`bench.profiles`: py-spy profiles of a service process for the missed targets;
- :mod:`bench.results`, :mod:`bench.stats`: the figures and their arithmetic;
- :mod:`bench.report`: the table, the JSON, the plots and docs/benchmarks.md.
"""
