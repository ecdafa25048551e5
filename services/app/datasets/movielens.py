"""MovieLens "latest-small" (movies.csv, ratings.csv, tags.csv) as Attune messages.

- movies.csv -> ContentUpsert: item_id = movieId, genres -> lower-case tags, the year
  from the title's "(1995)" -> metadata, and the users' free-text tags from tags.csv
  appended to the description so that the embedding sees them.
- ratings.csv -> BehaviourEvent "rating" events, oldest first (the file is sorted by
  user, so the ratings are read and sorted once: ~0.1 s for 100,836 rows).

The data set is not ours to ship: point these functions at a folder holding it (the
project keeps one at ``../shared/data/ml-latest-small``).
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from schemas.content import ContentUpsert
from schemas.events import BehaviourEvent, EventProperties

MOVIELENS_TENANT = "movielens"
MOVIELENS_UPDATED_AT = datetime(2018, 9, 26, tzinfo=UTC)
"""The ``updated_at`` of every MovieLens item: the day the data set was generated."""
NO_GENRES = "(no genres listed)"
MAX_USER_TAGS = 20
"""At most this many user tags (the most frequent) go into an item's description."""

# "Toy Story (1995)", "Runaway Brain (1995) ", and a series' "(2006-2007)" (en dash).
_YEAR = re.compile(r"\((\d{4})(?:\s*[-\u2013]\s*\d{0,4})?\)\s*$")


class Movie(NamedTuple):
    """One row of movies.csv, parsed."""

    movie_id: str
    title: str
    year: int | None
    genres: tuple[str, ...]


class Rating(NamedTuple):
    """One row of ratings.csv (the timestamp in unix seconds)."""

    user_id: str
    movie_id: str
    rating: float
    timestamp: int


def default_movielens_folder() -> Path:
    """Where the project keeps the data set: ``../shared/data/ml-latest-small`` next to
    the repository (it may not exist on every machine)."""
    return Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ml-latest-small"


def parse_year(title: str) -> int | None:
    """The year in a MovieLens title's trailing "(1995)", if any."""
    match = _YEAR.search(title)
    return int(match.group(1)) if match else None


def _rows(path: Path) -> Iterator[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader, None)  # header
        yield from reader


def read_movies(folder: Path | str) -> dict[str, Movie]:
    """movies.csv by movieId, in file order."""
    movies: dict[str, Movie] = {}
    for movie_id, raw_title, genres in _rows(Path(folder) / "movies.csv"):
        title = raw_title.strip()
        names = () if genres in ("", NO_GENRES) else tuple(genres.split("|"))
        movies[movie_id] = Movie(movie_id, title, parse_year(title), names)
    return movies


def read_user_tags(folder: Path | str, *, limit: int = MAX_USER_TAGS) -> dict[str, list[str]]:
    """tags.csv aggregated per movieId: the most frequent tags first (case-insensitive;
    the spelling first seen wins), at most ``limit`` per movie. No tags.csv: no tags."""
    path = Path(folder) / "tags.csv"
    if not path.exists():
        return {}
    counts: dict[str, Counter[str]] = {}
    spelling: dict[str, dict[str, str]] = {}
    for _user_id, movie_id, tag, _timestamp in _rows(path):
        text = " ".join(tag.split())
        if not text:
            continue
        folded = text.casefold()
        counts.setdefault(movie_id, Counter())[folded] += 1
        spelling.setdefault(movie_id, {}).setdefault(folded, text)
    # Counter.most_common keeps first-seen order among equal counts.
    return {
        movie_id: [spelling[movie_id][tag] for tag, _ in counter.most_common(limit)]
        for movie_id, counter in counts.items()
    }


def _description(movie: Movie, user_tags: list[str]) -> str | None:
    parts = []
    if movie.genres:
        parts.append("Genres: " + ", ".join(movie.genres) + ".")
    if user_tags:
        parts.append("Tags: " + ", ".join(user_tags) + ".")
    return " ".join(parts) or None


def movielens_items(
    folder: Path | str, tenant: str = MOVIELENS_TENANT, *, max_user_tags: int = MAX_USER_TAGS
) -> list[ContentUpsert]:
    """Every movie as a content item (9,742 for latest-small), in file order."""
    user_tags = read_user_tags(folder, limit=max_user_tags)
    items = []
    for movie in read_movies(folder).values():
        metadata: dict[str, str | int | float | bool | list[str]] = {"kind": "film"}
        if movie.year is not None:
            metadata["year"] = movie.year
        items.append(
            ContentUpsert(
                tenant=tenant,
                item_id=movie.movie_id,
                title=movie.title,
                description=_description(movie, user_tags.get(movie.movie_id, [])),
                tags=[genre.lower() for genre in movie.genres],
                metadata=metadata,
                updated_at=MOVIELENS_UPDATED_AT,
            )
        )
    return items


def movielens_ratings(folder: Path | str, *, limit: int | None = None) -> list[Rating]:
    """ratings.csv oldest first (ties keep file order); the first ``limit`` if given."""
    ratings = [
        Rating(user_id, movie_id, float(rating), int(timestamp))
        for user_id, movie_id, rating, timestamp in _rows(Path(folder) / "ratings.csv")
    ]
    ratings.sort(key=lambda row: row.timestamp)
    return ratings if limit is None else ratings[:limit]


def rating_message_id(rating: Rating) -> str:
    """The deterministic messageId of a rating event (the idempotency key)."""
    return f"ml-{rating.user_id}-{rating.movie_id}-{rating.timestamp}"


def movielens_events(
    folder: Path | str, tenant: str = MOVIELENS_TENANT, limit: int | None = None
) -> Iterator[BehaviourEvent]:
    """Every rating as a "rating" track event, oldest first; the first ``limit`` if given.
    ``properties.tags`` holds the movie's genres (lower case)."""
    genres = {
        movie_id: [genre.lower() for genre in movie.genres]
        for movie_id, movie in read_movies(folder).items()
    }
    for rating in movielens_ratings(folder, limit=limit):
        yield BehaviourEvent(
            tenant=tenant,
            type="track",
            event="rating",
            message_id=rating_message_id(rating),
            user_id=rating.user_id,
            timestamp=datetime.fromtimestamp(rating.timestamp, UTC),
            properties=EventProperties(
                item_id=rating.movie_id,
                rating=rating.rating,
                tags=genres.get(rating.movie_id, []),
            ),
        )


__all__ = [
    "MAX_USER_TAGS",
    "MOVIELENS_TENANT",
    "MOVIELENS_UPDATED_AT",
    "Movie",
    "Rating",
    "default_movielens_folder",
    "movielens_events",
    "movielens_items",
    "movielens_ratings",
    "parse_year",
    "rating_message_id",
    "read_movies",
    "read_user_tags",
]
