"""The query API's HTTP layer: filter parsing and the error shape (engine not needed)."""

from __future__ import annotations

import httpx
import pytest

from services.common.http import ApiError, create_http_app
from services.common.settings import Settings
from services.common.vectorindex import NumericRange
from services.query.direct import ROUTES
from services.query.routes import parse_filters, query_router


def test_get_filters_parse_into_an_item_filter() -> None:
    item_filter = parse_filters(
        "acme", ["drama", "war"], ["lang=en", "year>=1990", "year<=2000", "color=true", "n=3"]
    )
    assert item_filter.tenant == "acme"
    assert list(item_filter.tags_any) == ["drama", "war"]
    assert item_filter.metadata_equals == {"lang": "en", "color": True, "n": 3}
    assert item_filter.metadata_ranges == {"year": NumericRange(gte=1990, lte=2000)}


@pytest.mark.parametrize("condition", ["year>=soon", "no-operator", "=x", "k<3"])
def test_bad_filters_are_refused_naming_the_parameter(condition: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_filters("acme", [], [condition])
    assert raised.value.status == 422
    assert raised.value.details[0].field == "filter"


def client(*, with_engine: bool) -> httpx.AsyncClient:
    app = create_http_app(
        service="query", title="t", description="d", settings=Settings(), routers=[query_router]
    )
    if with_engine:
        app.state.query_engine = object()  # never reached: every request below is refused first
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query")


async def test_errors_have_the_one_shape() -> None:
    async with client(with_engine=True) as api:
        bad_filter = await api.get("/v1/trending", params={"filter": "year>=soon"})
        bad_limit = await api.get("/v1/trending", params={"limit": 0})
        bad_body = await api.post("/v1/search", json={"limit": 5})
        no_route = await api.get("/v1/nothing")
    async with client(with_engine=False) as api:
        no_engine = await api.get("/v1/trending")

    assert bad_filter.status_code == 422
    assert bad_filter.json()["error"]["code"] == "validation_error"
    assert bad_limit.json()["error"]["details"][0]["field"] == "limit"
    assert bad_body.json()["error"]["details"][0]["field"] == "query"
    assert no_engine.status_code == 503
    assert no_engine.json()["error"]["code"] == "unavailable"
    assert no_route.status_code == 404
    assert no_route.json()["error"]["code"] == "not_found"


def engine_client(*, direct: bool = True) -> httpx.AsyncClient:
    """The query app over the fake engine; ``direct=False`` leaves out the Starlette
    routes, so that FastAPI's declared routes serve (what the direct ones must match)."""
    from tests.unit.test_query_engine import FakeReader, engine

    app = create_http_app(
        service="query", title="t", description="d", settings=Settings(),
        routers=[query_router], routes=ROUTES if direct else (),
    )  # fmt: skip
    app.state.query_engine = engine(
        FakeReader(
            recent={"ann": [("apollo", 4.0)]},
            trending=[("bread", 9.0), ("pasta", 3.0)],
            popular=[("bread", 400.0), ("mars", 100.0)],
            co={"apollo": [("mars", 5.0)]},
        )
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://query")


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "fastapi"])
async def test_recommendations_take_per_request_weights_diversity_and_exclusions(
    direct: bool,
) -> None:
    headers = {"X-Attune-Tenant": "acme"}
    async with engine_client(direct=direct) as api:
        default = (await api.get("/v1/users/ann/recommendations", headers=headers)).json()
        popular = (
            await api.get(
                "/v1/users/ann/recommendations",
                params={
                    "w_content": 0,
                    "w_cooccurrence": 0,
                    "w_tags": 0,
                    "w_trending": 0,
                    "w_popular": 2,
                    "exclude": ["bread"],
                    "diversity": 0.4,
                },
                headers=headers,
            )
        ).json()
    assert default["weights"] == {
        "content": 1.0, "cooccurrence": 0.5, "trending": 0.25, "popular": 1.0, "tags": 0.5,
    }  # fmt: skip
    assert default["diversity"] == 0.0
    assert "apollo" not in [i["item_id"] for i in default["items"]]
    assert popular["weights"]["popular"] == 2.0
    assert popular["weights"]["content"] == 0.0
    assert popular["diversity"] == 0.4
    assert [i["item_id"] for i in popular["items"]] == ["mars"]  # bread excluded
    reason = popular["items"][0]["reasons"][0]
    # scaled among what may be recommended: mars is the most popular item left
    assert (reason["signal"], reason["weight"], reason["score"]) == ("popular", 2.0, 1.0)


@pytest.mark.parametrize(
    ("params", "field"),
    [({"w_content": -1}, "w_content"), ({"w_tags": "lots"}, "w_tags"),
     ({"diversity": 1.5}, "diversity")],
)  # fmt: skip
async def test_bad_weights_and_diversity_are_refused_naming_the_parameter(
    params: dict[str, object], field: str
) -> None:
    async with engine_client() as api:
        response = await api.get(
            "/v1/users/ann/recommendations", params=params, headers={"X-Attune-Tenant": "acme"}
        )
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == field


BAD_REQUESTS = [
    "/v1/trending?limit=0",
    "/v1/trending?filter=year>=soon&limit=5",
    "/v1/items/apollo/similar?limit=101",
    "/v1/items/" + "i" * 257 + "/similar",
    "/v1/users/ann/recommendations?limit=0",
    "/v1/users/ann/recommendations?limit=many&w_popular=-2&diversity=2",
    "/v1/users/ann/recommendations?exclude_seen=perhaps",
    "/v1/users/ann/recommendations?filter=year>=soon",
    "/v1/users/ann/recommendations?" + "&".join(f"tags=t{n}" for n in range(101)),
    "/v1/users/" + "u" * 257 + "/recommendations",
]


@pytest.mark.parametrize("path", BAD_REQUESTS)
async def test_the_direct_routes_refuse_what_fastapi_refuses_in_the_same_words(path: str) -> None:
    headers = {"X-Attune-Tenant": "acme"}
    async with engine_client(direct=True) as direct, engine_client(direct=False) as declared:
        served = await direct.get(path, headers=headers)
        expected = await declared.get(path, headers=headers)

    assert served.status_code == expected.status_code == 422
    assert served.json() == expected.json()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/users/ann/recommendations?exclude=bread&exclude=mars&colour=blue&limit=3", 200),
        ("/v1/trending?limit=2&tags=cooking&tags=space", 200),
        ("/v1/items/apollo/similar?limit=2", 200),
        ("/v1/items/nothing/similar", 404),
    ],
)
async def test_the_direct_routes_answer_as_the_declared_ones(path: str, status: int) -> None:
    headers = {"X-Attune-Tenant": "acme"}
    async with engine_client(direct=True) as direct, engine_client(direct=False) as declared:
        served = await direct.get(path, headers=headers)
        expected = await declared.get(path, headers=headers)

    assert served.status_code == expected.status_code == status
    assert served.json() == expected.json()
    if "exclude" in path:
        assert not {"bread", "mars"} & {i["item_id"] for i in served.json()["items"]}


async def test_made_up_http_methods_share_one_metrics_series() -> None:
    from prometheus_client import REGISTRY

    async with client(with_engine=True) as api:
        for method in ("FOOBAR", "BREW", "X" * 40):
            await api.request(method, "/v1/trending")
    methods = {
        sample.labels["method"]
        for metric in REGISTRY.collect()
        if metric.name == "attune_http_request_duration_seconds"
        for sample in metric.samples
    }
    assert not {"FOOBAR", "BREW", "X" * 40} & methods
    assert "other" in methods


async def test_the_direct_routes_are_measured_under_their_path_template() -> None:
    from prometheus_client import REGISTRY

    async with engine_client(direct=True) as api:
        await api.get("/v1/items/apollo/similar", headers={"X-Attune-Tenant": "acme"})
    routes = {
        sample.labels["route"]
        for metric in REGISTRY.collect()
        if metric.name == "attune_http_request_duration_seconds"
        for sample in metric.samples
    }
    assert "/v1/items/{item_id}/similar" in routes
