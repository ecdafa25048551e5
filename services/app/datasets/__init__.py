"""Data sets for Attune's demo, evaluation and benchmarks, and a fast Kafka loader.

- The demo set (ours, shipped): 60 items over eight themes for tenant "demo" and the
  events of twelve personas (``DEMO_USERS``), generated deterministically.
- MovieLens "latest-small" (not shipped: pass the folder): movies as items, ratings as
  events in timestamp order.
- ``produce()`` publishes either to the content and events topics at >100k msgs/s.

Importing this package loads no data and opens no connection.
"""

from services.app.datasets.demo import (
    DEMO_COLD_START_USER,
    DEMO_HISTORY_DAYS,
    DEMO_TENANT,
    DEMO_UPDATED_AT,
    DEMO_USERS,
    THEMES,
    DemoUser,
    demo_events,
    demo_items,
    item_themes,
)
from services.app.datasets.movielens import (
    MOVIELENS_TENANT,
    MOVIELENS_UPDATED_AT,
    Movie,
    Rating,
    default_movielens_folder,
    movielens_events,
    movielens_items,
    movielens_ratings,
    parse_year,
)
from services.app.datasets.producer import (
    Message,
    ProduceError,
    Progress,
    produce,
    route,
    to_record,
)
from services.app.datasets.progress import rich_progress, wait_with_progress

__all__ = [
    "DEMO_COLD_START_USER",
    "DEMO_HISTORY_DAYS",
    "DEMO_TENANT",
    "DEMO_UPDATED_AT",
    "DEMO_USERS",
    "MOVIELENS_TENANT",
    "MOVIELENS_UPDATED_AT",
    "THEMES",
    "DemoUser",
    "Message",
    "Movie",
    "ProduceError",
    "Progress",
    "Rating",
    "default_movielens_folder",
    "demo_events",
    "demo_items",
    "item_themes",
    "movielens_events",
    "movielens_items",
    "movielens_ratings",
    "parse_year",
    "produce",
    "rich_progress",
    "route",
    "to_record",
    "wait_with_progress",
]
