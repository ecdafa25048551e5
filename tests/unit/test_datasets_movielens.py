"""MovieLens latest-small parsing: a tiny folder in the same CSV format, and the real one."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import BehaviourEvent
from services.app.datasets import (
    movielens_events,
    movielens_items,
    movielens_ratings,
    parse_year,
)

MOVIES = """\
movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
11,"American President, The (1995)",Comedy|Drama|Romance
27008,From Dusk Till Dawn 2: Texas Blood Money (1999) ,Comedy|Crime|Horror
40697,Babylon 5,Sci-Fi
171749,Death Note: Desu nôto (2006\u20132007),(no genres listed)
"""
RATINGS = """\
userId,movieId,rating,timestamp
1,1,4.0,964982703
1,11,3.5,964981247
2,40697,5.0,1445714994
2,1,0.5,964981247
3,27008,2.0,964982000
"""
TAGS = """\
userId,movieId,tag,timestamp
2,1,pixar,1445714994
3,1,Pixar,1445714995
4,1,fun,1445714996
2,11,"politics, president",1445714997
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "movies.csv").write_text(MOVIES, encoding="utf-8")
    (tmp_path / "ratings.csv").write_text(RATINGS, encoding="utf-8")
    (tmp_path / "tags.csv").write_text(TAGS, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("title", "year"),
    [
        ("Toy Story (1995)", 1995),
        ("American President, The (1995)", 1995),
        ("Runaway Brain (1995) ", 1995),
        ("Death Note: Desu nôto (2006\u20132007)", 2006),
        ("Seven (a.k.a. Se7en) (1995)", 1995),
        ("Babylon 5", None),
        ("1984 (a novel)", None),
    ],
)
def test_year_comes_from_the_trailing_parentheses(title: str, year: int | None) -> None:
    assert parse_year(title) == year


def test_movies_become_content_items(folder: Path) -> None:
    items = {item.item_id: item for item in movielens_items(folder)}

    assert list(items) == ["1", "11", "27008", "40697", "171749"]
    toy = items["1"]
    assert toy.tenant == "movielens"
    assert toy.title == "Toy Story (1995)"
    assert toy.tags == ["adventure", "animation", "children", "comedy", "fantasy"]
    assert toy.metadata == {"kind": "film", "year": 1995}
    # Tags aggregated case-insensitively, most frequent first, first spelling kept.
    assert (
        toy.description
        == "Genres: Adventure, Animation, Children, Comedy, Fantasy. Tags: pixar, fun."
    )
    assert "pixar" in toy.text_to_embed()
    assert toy.updated_at == datetime(2018, 9, 26, tzinfo=UTC)

    assert items["11"].title == "American President, The (1995)"
    assert items["11"].description == "Genres: Comedy, Drama, Romance. Tags: politics, president."
    assert items["27008"].title == "From Dusk Till Dawn 2: Texas Blood Money (1999)"
    assert items["40697"].metadata == {"kind": "film"}
    assert items["40697"].tags == ["sci-fi"]
    assert items["171749"].tags == []
    assert items["171749"].metadata["year"] == 2006
    assert items["171749"].description is None


def test_the_tenant_is_configurable_and_tags_csv_is_optional(folder: Path) -> None:
    (folder / "tags.csv").unlink()
    items = movielens_items(folder, tenant="ml-test")

    assert {item.tenant for item in items} == {"ml-test"}
    assert items[0].description == "Genres: Adventure, Animation, Children, Comedy, Fantasy."


def test_ratings_become_rating_events_in_timestamp_order(folder: Path) -> None:
    events = list(movielens_events(folder))

    assert [e.timestamp.timestamp() for e in events] == [
        964981247,
        964981247,
        964982000,
        964982703,
        1445714994,
    ]
    # Equal timestamps keep the file's order.
    assert [e.message_id for e in events[:2]] == ["ml-1-11-964981247", "ml-2-1-964981247"]
    first = events[0]
    assert first.tenant == "movielens"
    assert (first.type, first.event, first.user_id) == ("track", "rating", "1")
    assert first.timestamp == datetime.fromtimestamp(964981247, UTC)
    assert first.properties.item_id == "11"
    assert first.properties.rating == 3.5
    assert first.properties.model_extra == {"tags": ["comedy", "drama", "romance"]}
    wire = first.model_dump(mode="json")
    assert wire["messageId"] == "ml-1-11-964981247"
    assert wire["properties"]["tags"] == ["comedy", "drama", "romance"]
    assert BehaviourEvent.model_validate_json(first.model_dump_json()) == first


def test_limit_takes_the_oldest_ratings(folder: Path) -> None:
    events = list(movielens_events(folder, tenant="t2", limit=2))

    assert [e.message_id for e in events] == ["ml-1-11-964981247", "ml-2-1-964981247"]
    assert {e.tenant for e in events} == {"t2"}
    assert len(movielens_ratings(folder, limit=3)) == 3
