"""Searches the index can serve, or a 400 that says why; counts exact, planned and estimated
(Prefer: count=...), each saying in Preference-Applied which count it is."""

import pytest

from helpers import close_app, make_app
from svc.resource import COUNT_EXACT_UPTO, SEARCH_MAX_WORDS

pytestmark = pytest.mark.app

# Rows straight into PostgreSQL, titled "bulk <n>", analyzed so that the planner knows them.
BULK = ("insert into tasks (title, done) select 'bulk ' || n, n %% 2 = 0 "
        "from generate_series(1, %(count)s) as n")


def create(client, title):
    response = client.post("/api/tasks", json={"title": title})
    assert response.status_code == 201
    return response.get_json()["id"]


def bulk(db, count):
    db.execute(BULK, {"count": count})
    db.execute("analyze tasks")


@pytest.mark.parametrize("q", ["a", "xq", "ab%20cd", "..%20__", "a.b.c", "%25%25%25"])
def test_a_search_without_a_word_of_three_letters_or_digits_is_a_400_naming_q(client, q):
    response = client.get(f"/api/tasks?q={q}")
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"
    (error,) = response.get_json()["errors"]
    assert error["field"] == "q"
    assert error["message"].startswith("needs a word with at least three letters or digits")
    assert "index" in error["message"] and "q needs" in response.get_json()["detail"]


def test_short_words_beside_a_long_one_filter_what_the_index_found(client):
    both = create(client, "go to the review")
    create(client, "review alone")
    create(client, "go alone")
    assert [t["id"] for t in client.get("/api/tasks?q=go%20review").get_json()["items"]] == [both]
    cyrillic = create(client, "Сделать дз")
    assert [t["id"] for t in client.get("/api/tasks?q=дз%20сде").get_json()["items"]] == [cyrillic]


def test_a_search_of_more_words_than_the_bound_is_a_400(client):
    create(client, "word " * SEARCH_MAX_WORDS)
    at_most = "%20".join(["word"] * SEARCH_MAX_WORDS)
    assert len(client.get(f"/api/tasks?q={at_most}").get_json()["items"]) == 1
    response = client.get(f"/api/tasks?q={at_most}%20word")
    assert response.status_code == 400
    assert response.get_json()["errors"] == [{"field": "q", "message": (
        f"holds {SEARCH_MAX_WORDS + 1} words; give at most {SEARCH_MAX_WORDS}")}]


def test_the_openapi_document_states_the_search_rules(client):
    (q,) = [p for p in client.get("/api/openapi.json").get_json()["paths"]["/api/tasks"]["get"]
            ["parameters"] if p["name"] == "q"]
    assert "three letters or digits in a row" in q["description"]
    assert f"at most {SEARCH_MAX_WORDS} words" in q["description"]


def test_count_planned_is_the_planners_estimate_and_says_so(client, db):
    bulk(db, 2000)
    response = client.get("/api/tasks?limit=1", headers={"Prefer": "count=planned"})
    assert response.headers["Preference-Applied"] == "count=planned"
    assert 1000 <= int(response.headers["X-Total-Count"]) <= 4000  # an estimate, near 2,000
    filtered = client.get("/api/tasks?limit=1&done=true", headers={"Prefer": "count=planned"})
    assert 500 <= int(filtered.headers["X-Total-Count"]) <= 2000


def test_count_estimated_is_exact_up_to_its_limit(client, db):
    bulk(db, 30)
    response = client.get("/api/tasks?q=bulk&done=true", headers={"Prefer": "count=estimated"})
    assert response.headers["X-Total-Count"] == "15"
    assert response.headers["Preference-Applied"] == "count=exact"


def test_count_estimated_past_its_limit_is_the_planners_estimate_and_says_so(client, db):
    bulk(db, COUNT_EXACT_UPTO + 500)
    response = client.get("/api/tasks?limit=1", headers={"Prefer": "count=estimated"})
    assert response.headers["Preference-Applied"] == "count=planned"
    assert int(response.headers["X-Total-Count"]) > COUNT_EXACT_UPTO  # never one that reads exact


def test_each_count_is_cached_apart(client, db):
    bulk(db, 40)
    answers = {}
    for prefer in ("count=exact", "count=planned", "count=estimated", None):
        headers = {"Prefer": prefer} if prefer else {}
        first, again = (client.get("/api/tasks?limit=1", headers=headers) for _ in range(2))
        assert (first.headers["X-App-Cache"], again.headers["X-App-Cache"]) == ("MISS", "HIT")
        assert again.headers.get("Preference-Applied") == first.headers.get("Preference-Applied")
        answers[prefer] = again.headers.get("Preference-Applied")
    assert answers == {"count=exact": "count=exact", "count=planned": "count=planned",
                       "count=estimated": "count=exact", None: None}


def test_count_exact_past_the_read_bound_is_the_planners_estimate_and_says_so(config, db, rds):
    # 300,000 rows a search matches: its page is the first rows of the table (milliseconds),
    # its exact count reads them all, which takes longer than a 50 ms bound.
    db.execute("insert into tasks (title) select 'slow count ' || n "
               "from generate_series(1, 300000) as n")
    db.execute("analyze tasks")
    app = make_app(config, READ_TIMEOUT="0.05")
    try:
        response = app.test_client().get("/api/tasks?q=slow&limit=1",
                                         headers={"Prefer": "count=exact"})
    finally:
        close_app(app)
    assert response.status_code == 200 and len(response.get_json()["items"]) == 1
    assert response.headers["Preference-Applied"] == "count=planned"
    assert int(response.headers["X-Total-Count"]) > 100_000
