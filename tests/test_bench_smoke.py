"""make bench in miniature: it runs every scenario to the end and reports sane figures (no test
asserts a speed: this machine's is not the one the figures are for)."""

import json
import os
import subprocess
import sys

import pytest

from stack import ROOT

pytestmark = pytest.mark.stack

# 20,000 rows: an app-miss row measures 4,000 ids never asked before (half of its 40 % slice),
# which no app answers in 0.3 s (13,000 misses a second): a walk that wrapped would meet its own
# hits. (With 800, a fast 2-core machine wrapped: 8 % hits, once in three loaded runs.)
SHORT = {"BENCH_SECONDS": "0.3", "BENCH_ROUNDS": "1", "BENCH_ROWS": "20000",
         "BENCH_PRIME_SECONDS": "0.3", "BENCH_CONNECTIONS": "8", "BENCH_SCALE": "2000",
         "BENCH_SCALE_SECONDS": "0.05", "BENCH_ABUSE_SECONDS": "0.5"}
# Each read row and the row it is compared with: nginx's with the static file of its shape, the
# app's with its floor.
CEILINGS = {"static list": "itself", "micro list": "static list", "edge list": "static list",
            "static item": "itself", "micro item": "static item", "edge item": "static item",
            "floor": "itself", "app hit list": "floor", "app pg list": "floor",
            "app hit item": "floor", "app pg item": "floor",
            "app hit query": "floor", "app pg query": "floor"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One short run of tests/bench.py: (its exit status, stdout, the JSON figures)."""
    path = tmp_path_factory.mktemp("bench") / "figures.json"
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "bench.py"), "--json", str(path)],
                            env={**os.environ, **SHORT}, capture_output=True, text=True,
                            timeout=180)
    return result.returncode, result.stdout + result.stderr, json.loads(path.read_text())


def test_a_short_bench_finishes_and_prints_every_row_and_where_its_figures_went(bench):
    status, output, figures = bench
    assert status == 0, output
    for row in figures["rows"]:
        assert row["scenario"] in output
    assert "JSON: " in output and "figures.json" in output


def test_every_read_row_has_figures_and_a_ratio_to_its_own_ceiling(bench):
    rows = {r["key"]: r for r in bench[2]["rows"]}
    assert {key: row["vs"] for key, row in rows.items()} == CEILINGS
    for key, row in rows.items():
        assert row["rps"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"], key
        assert row["ratio"] > 0 and row["errors"] == 0, key
        assert row["ratio"] == 1 or row["vs"] != "itself", key
    # The micro-cache's copy expires once a second: a request then goes to the edge.
    assert rows["micro item"]["served_by"].get("micro", 0) >= 90
    assert rows["app pg item"]["served_by"] == {"app MISS": 100.0}
    assert rows["app hit list"]["served_by"] == {"app HIT": 100.0}


def test_every_acknowledged_write_is_stored_and_nothing_answered_5xx(bench):
    figures = bench[2]
    assert figures["checks_failed"] == []
    (round_,) = figures["writes"]["rounds"]
    post, patches = round_["post"], round_["mixed"]["writes"]
    assert post["ok"] > 0 and patches["ok"] > 0 and round_["mixed"]["reads"]["ok"] > 0
    assert post["ok"] <= post["stored"] <= post["ok"] + post["unanswered"]
    assert patches["ok"] <= patches["stored"] <= patches["ok"] + patches["unanswered"]
    assert post["5xx"] == patches["5xx"] == 0


def test_worker_memory_is_reported_for_each_gunicorn_worker(bench):
    rss = bench[2]["worker_rss_mib"]
    assert len(rss) >= 1 and all(0 < r["VmRSS"] <= r["VmHWM"] for r in rss)


def test_the_scale_table_and_the_abuse_row_are_measured_and_printed(bench):
    status, output, figures = bench
    scale = figures["scale"]
    (column,) = scale["columns"].values()
    assert all(row["p50_ms"] > 0 and row["n"] >= 5 for row in column.values())
    assert column["short"]["statuses"] == {"400": column["short"]["n"]}  # refused, not run
    assert column["planned"]["applied"] == "count=planned"
    abuse = scale["abuse"]
    assert abuse["alone"]["statuses"].get("200", 0) > 0 and abuse["ratio"] > 0
    assert "429" in abuse["flood"]["statuses"]  # the hostile client meets its budget
    assert "scale, straight to gunicorn" in output and "abuse, 2,000 tasks" in output
