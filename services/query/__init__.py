"""The query service: HTTP reads from the vector index and Redis.

- :func:`~services.query.service.mount`: what it adds to a process;
- :mod:`.routes`: the HTTP entry (thin handlers);
- :mod:`.engine`: the use cases (recommendations, search, similar, trending, profile);
- :mod:`.ranking`, :mod:`.explain`: the blend and its explanations.
"""

from services.query.config import QueryConfig
from services.query.engine import QueryEngine
from services.query.service import build_query_engine, mount

__all__ = ["QueryConfig", "QueryEngine", "build_query_engine", "mount"]
