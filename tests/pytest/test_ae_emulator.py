"""The AE emulator answers like the Analytics Engine SQL API, over real loopback HTTP.

Sums are checked against totals computed here from the points written, never against the
emulator's own arithmetic.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from loaders import stack
from loaders.emulators import ae_admin

DATASET = "conformance"
START = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def make_points() -> list[dict]:
    """72 points over three hours and three rentals, with varying sample intervals."""
    points = []
    for n in range(72):
        moment = START + timedelta(minutes=2 * n + 1)
        kind = "invalidation" if n % 9 == 0 else "click"
        points.append(
            {
                "blobs": ["example.com", "join" if n % 4 == 0 else "/p", *[""] * 10, kind],
                "doubles": [0.0 if kind == "invalidation" else 1.0, float(n % 3)],
                "indexes": [f"rent_{n % 3}"],
                "timestamp": moment.isoformat().replace("+00:00", "Z"),
                "sample_interval": 1 + n % 5,
            }
        )
    return points


POINTS = make_points()


def _stamp(point: dict) -> datetime:
    return datetime.fromisoformat(point["timestamp"])


def weighted(key, value=lambda p: p["doubles"][0], keep=lambda p: True) -> dict:
    totals: dict = defaultdict(float)
    for point in POINTS:
        if keep(point):
            totals[key(point)] += point["sample_interval"] * value(point)
    return dict(totals)


def sql(env: dict, query: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {env['AE_API_TOKEN']}", **kwargs.pop("headers", {})}
    url = kwargs.pop("url", env["AE_SQL_URL"])
    return httpx.post(url, content=query.encode(), headers=headers, timeout=30, **kwargs)


def rows(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


@pytest.fixture
def written(stack_env: dict, ae_reset: str) -> dict:
    assert ae_admin.write_points(ae_reset, DATASET, POINTS) == len(POINTS)
    return stack_env


# -- Conformance: AE query shapes against independent sums ------------------------------------

HOUR_EPOCH = (
    "SELECT intDiv(toUInt32(timestamp), 3600) * 3600 AS k, SUM(_sample_interval * double1) AS v "
    "FROM conformance GROUP BY k ORDER BY k FORMAT JSONEachRow"
)
HOUR_INTERVAL = (
    "SELECT toStartOfInterval(timestamp, INTERVAL '1' HOUR) AS k, "
    "SUM(_sample_interval * double1) AS v FROM conformance GROUP BY k ORDER BY k FORMAT JSONEachRow"
)
BY_RENTAL = (
    "SELECT index1 AS k, SUM(_sample_interval * double1) AS v FROM conformance "
    "WHERE timestamp >= toDateTime('2026-11-02 00:00:00') "
    "AND timestamp < toDateTime('2026-11-02 00:00:00') + INTERVAL '1' DAY "
    "GROUP BY k ORDER BY k FORMAT JSONEachRow"
)
SUM_IF = (
    "SELECT formatDateTime(timestamp, '%Y-%m-%d %H') AS k, "
    "sumIf(_sample_interval * double2, blob13 = 'invalidation') AS v "
    "FROM conformance GROUP BY k ORDER BY k FORMAT JSONEachRow"
)
COUNT_IF_JOIN_LITERAL = (
    "SELECT index1 AS k, countIf(blob2 = 'join') AS v "  # 'join' in a literal is not a JOIN
    "FROM conformance GROUP BY k ORDER BY k FORMAT JSONEachRow"
)
SUBQUERY = (
    "SELECT k, SUM(w) AS v FROM (SELECT index1 AS k, _sample_interval * double1 AS w "
    "FROM conformance WHERE blob2 = 'join') GROUP BY k ORDER BY k FORMAT JSONEachRow"
)


def _hour(point: dict) -> datetime:
    return _stamp(point).replace(minute=0, second=0)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (HOUR_EPOCH, weighted(lambda p: int(_hour(p).timestamp()))),
        (HOUR_INTERVAL, weighted(lambda p: _hour(p).strftime("%Y-%m-%d %H:%M:%S"))),
        (BY_RENTAL, weighted(lambda p: p["indexes"][0])),
        (
            SUM_IF,
            weighted(
                lambda p: _hour(p).strftime("%Y-%m-%d %H"),
                value=lambda p: p["doubles"][1] if p["blobs"][12] == "invalidation" else 0.0,
            ),
        ),
        (
            COUNT_IF_JOIN_LITERAL,
            {
                f"rent_{r}": sum(
                    1 for p in POINTS if p["indexes"][0] == f"rent_{r}" and p["blobs"][1] == "join"
                )
                for r in range(3)
            },
        ),
        (
            SUBQUERY,
            weighted(lambda p: p["indexes"][0], keep=lambda p: p["blobs"][1] == "join"),
        ),
    ],
    ids=["hour-intdiv", "hour-interval", "rental-day-range", "sumif", "countif-literal", "subq"],
)
def test_query_shapes_return_sampling_weighted_sums(written: dict, query: str, expected: dict):
    # Given the points written by the fixture, when AE's query shapes run over them
    answer = {row["k"]: row["v"] for row in rows(sql(written, query))}

    # then every group's total matches the sum computed from the points themselves
    assert answer == pytest.approx(expected)


def test_missing_blobs_and_doubles_read_as_empty_and_zero(stack_env: dict, ae_reset: str):
    ae_admin.write_points(ae_reset, "sparse", [{"indexes": ["r"], "blobs": ["only"]}])
    query = "SELECT blob1, blob2, blob20, double1, double20, _sample_interval FROM sparse"
    answer = rows(sql(stack_env, query + " FORMAT JSONEachRow"))
    assert answer == [
        {"blob1": "only", "blob2": "", "blob20": "", "double1": 0, "double20": 0,
         "_sample_interval": 1}
    ]  # fmt: skip


# -- Output formats ---------------------------------------------------------------------------


def test_json_format_has_meta_data_rows_and_bare_64_bit_integers(written: dict):
    response = sql(written, "SELECT count() AS n, min(timestamp) AS t FROM conformance FORMAT JSON")
    doc = response.json()

    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-query-id"]
    assert doc["meta"] == [{"name": "n", "type": "UInt64"}, {"name": "t", "type": "DateTime"}]
    assert doc["data"] == [{"n": len(POINTS), "t": "2026-11-02 10:01:00"}]
    assert doc["rows"] == 1
    assert "statistics" not in doc


def test_no_format_clause_answers_json(written: dict):
    doc = sql(written, "SELECT count() FROM conformance LIMIT 5").json()
    assert doc["data"] == [{"count()": len(POINTS)}]
    assert doc["rows_before_limit_at_least"] == 1


def test_json_each_row_and_tab_separated_shapes(written: dict):
    base = "SELECT index1, count() AS n FROM conformance GROUP BY index1 ORDER BY index1"
    each_row = sql(written, base + " FORMAT JSONEachRow")
    tsv = sql(written, base + " FORMAT TabSeparated")

    assert rows(each_row) == [{"index1": f"rent_{r}", "n": 24} for r in range(3)]
    assert tsv.text == "".join(f"rent_{r}\t24\n" for r in range(3))
    assert tsv.headers["content-type"].startswith("text/tab-separated-values")


def test_get_with_query_parameter(written: dict):
    response = httpx.get(
        written["AE_SQL_URL"],
        params={"query": "SELECT count() AS n FROM conformance FORMAT JSONEachRow"},
        headers={"Authorization": f"Bearer {written['AE_API_TOKEN']}"},
    )
    assert rows(response) == [{"n": len(POINTS)}]


def test_show_tables_and_timezone(written: dict):
    tables = rows(sql(written, "SHOW TABLES FORMAT JSONEachRow"))
    zone = sql(written, "SHOW TIMEZONE FORMAT TabSeparated")
    assert tables == [{"name": DATASET}]
    assert zone.text == "Etc/UTC\n"


# -- Errors -----------------------------------------------------------------------------------


def _other_account_url(env: dict) -> str:
    return env["AE_SQL_URL"].replace(env["AE_ACCOUNT_ID"], "f" * 32)


@pytest.mark.parametrize(
    ("headers", "account"),
    [({"Authorization": ""}, False), ({"Authorization": "Bearer wrong"}, False), ({}, True)],
    ids=["missing-token", "wrong-token", "wrong-account"],
)
def test_auth_failures_answer_403_plain_text(written: dict, headers: dict, account: bool):
    url = _other_account_url(written) if account else written["AE_SQL_URL"]
    response = sql(written, "SELECT count() FROM conformance", headers=headers, url=url)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("Authorization error")
    assert written["AE_API_TOKEN"] not in response.text


@pytest.mark.parametrize(
    ("query", "headers", "starts"),
    [
        ("", {}, "Query string error"),
        ("   ", {}, "Query string error"),
        ("SELECT 1", {"Content-Type": "application/json"}, "Content type error"),
    ],
    ids=["empty", "blank", "json-content-type"],
)
def test_malformed_requests_answer_400(stack_env: dict, query: str, headers: dict, starts: str):
    response = sql(stack_env, query, headers=headers)
    assert response.status_code == 400
    assert response.text.startswith(starts)


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("INSERT INTO conformance VALUES (1)", "only SELECT"),
        ("ALTER TABLE conformance DELETE WHERE 1", "only SELECT"),
        ("DROP TABLE conformance", "only SELECT"),
        ("CREATE TABLE x (a String) ENGINE = Memory", "only SELECT"),
        ("SELECT count() FROM conformance SETTINGS max_threads = 1", "SETTINGS"),
        ("SELECT 1 FROM conformance a JOIN conformance b ON a.index1 = b.index1", "JOIN"),
        ("SELECT 1 FROM conformance UNION ALL SELECT 2 FROM conformance", "UNION"),
        ("SELECT 1 FROM conformance a, conformance b", "single dataset"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "file()"),
        ("SELECT file('/etc/passwd')", "file()"),
        ("SELECT * FROM url('http://127.0.0.1/', 'CSV')", "url()"),
        ("SELECT * FROM numbers(10)", "numbers()"),
        ("SELECT * FROM remote('127.0.0.1', 'default', 'other')", "remote()"),
        ("SELECT count() FROM system.tables", "system tables"),
        ("SELECT count() FROM default.other", "other databases"),
        ("SELECT count() FROM nosuchdataset", "unknown dataset 'nosuchdataset'"),
        ("SELECT 1 FROM conformance; SELECT 2 FROM conformance", "one statement"),
        ("SELECT count() FROM conformance FORMAT CSV", "format 'CSV'"),
        ("SELECT nosuchcolumn FROM conformance", "nosuchcolumn"),
        ("SELECT count( FROM conformance", "Syntax error"),
    ],
)
def test_forbidden_or_invalid_sql_answers_422_naming_the_problem(
    written: dict, query: str, names: str
):
    response = sql(written, query)
    assert response.status_code == 422
    assert response.text.startswith("Input was invalid: ")
    assert names in response.text
    assert "max_execution_time" not in response.text


def test_keywords_in_literals_and_comments_are_not_rejected(written: dict):
    query = (
        "SELECT count() AS n FROM conformance -- a JOIN b; SETTINGS\n"
        "WHERE blob2 != 'union; drop' /* file( system.x */ FORMAT JSONEachRow"
    )
    assert rows(sql(written, query)) == [{"n": len(POINTS)}]


# -- Write limits -----------------------------------------------------------------------------

GOOD = {"blobs": ["a"], "doubles": [1.0], "indexes": ["r"]}


@pytest.mark.parametrize(
    ("bad", "rule"),
    [
        ({**GOOD, "blobs": ["b"] * 21}, "21 blobs"),
        ({**GOOD, "doubles": [1.0] * 21}, "21 doubles"),
        ({**GOOD, "indexes": []}, "0 indexes"),
        ({**GOOD, "indexes": ["a", "b"]}, "2 indexes"),
        ({**GOOD, "indexes": ["x" * 97]}, "index is 97 bytes"),
        ({**GOOD, "indexes": ["é" * 49]}, "index is 98 bytes"),
        ({**GOOD, "blobs": ["x" * 16384, "y"]}, "blobs total 16385 bytes"),
        ({**GOOD, "blobs": ["é" * 8192, "z"]}, "blobs total 16385 bytes"),
        ({**GOOD, "sample_interval": 0}, "sample_interval"),
        ({**GOOD, "timestamp": "2026-11-02 10:00:00"}, "needs Z or an offset"),
    ],
)
def test_write_limits_answer_400_naming_the_point_and_write_nothing(
    stack_env: dict, ae_reset: str, bad: dict, rule: str
):
    # Given a dataset with one point
    ae_admin.write_points(ae_reset, "limits", [GOOD])

    # when a request's second point breaks a limit
    url = f"{ae_reset}/emulator/datasets/limits/points"
    response = httpx.post(url, json={"points": [GOOD, bad, GOOD]})

    # then it is refused naming point 1 and the rule, and none of its points were written
    assert response.status_code == 400
    assert response.text.startswith("point 1: ")
    assert rule in response.text
    count = rows(sql(stack_env, "SELECT count() AS n FROM limits FORMAT JSONEachRow"))
    assert count == [{"n": 1}]


def test_limits_themselves_are_accepted(stack_env: dict, ae_reset: str):
    edge = {"blobs": ["x" * 16365] + ["y"] * 19, "doubles": [2.0] * 20, "indexes": ["i" * 96]}
    assert ae_admin.write_points(ae_reset, "edge", [edge]) == 1


def test_timestamps_with_offsets_are_stored_in_utc(stack_env: dict, ae_reset: str):
    point = {**GOOD, "timestamp": "2026-11-02T14:05:00+01:00"}
    ae_admin.write_points(ae_reset, "zones", [point])
    answer = rows(sql(stack_env, "SELECT timestamp FROM zones FORMAT JSONEachRow"))
    assert answer == [{"timestamp": "2026-11-02 13:05:00"}]


def test_bulk_and_fallback_write_paths_store_the_same_rows(stack_env: dict, ae_reset: str):
    # Given points with nulls, fractional seconds and offsets, written once as a plain body
    # (validated inside ClickHouse) and once with an extra key (validated in Python)
    points = [
        {**p, "blobs": [None, *p["blobs"][1:]], "timestamp": p["timestamp"][:-1] + ".75+02:00"}
        for p in POINTS[:12]
    ]
    ae_admin.write_points(ae_reset, "viafast", points)
    body = {"points": points, "note": "an extra key sends this body down the Python path"}
    url = f"{ae_reset}/emulator/datasets/viapython/points"
    assert httpx.post(url, json=body).json() == {"written": 12}

    # then both datasets hold identical rows
    query = (
        "SELECT timestamp, _sample_interval, index1, blob1, blob2, blob13, double1, double2 "
        "FROM {} ORDER BY timestamp FORMAT JSONEachRow"
    )
    fast = rows(sql(stack_env, query.format("viafast")))
    slow = rows(sql(stack_env, query.format("viapython")))
    assert fast == slow
    assert fast[0]["timestamp"] == "2026-11-02 08:01:00"
    assert fast[0]["blob1"] == ""


def test_dataset_name_must_be_an_identifier(ae_reset: str):
    response = httpx.post(f"{ae_reset}/emulator/datasets/bad-name/points", json={"points": []})
    assert response.status_code == 400


def test_reset_forgets_datasets_and_faults(written: dict):
    base = written["_ae_base"]
    ae_admin.queue_faults(base, [{"status": 503}])
    ae_admin.reset(base)
    response = sql(written, "SELECT count() FROM conformance")
    assert response.status_code == 422
    assert "unknown dataset" in response.text


# -- Faults -----------------------------------------------------------------------------------

COUNT = "SELECT count() AS n FROM conformance FORMAT JSON"


def test_status_faults_are_served_in_order_after_the_auth_check(written: dict):
    # Given five queued status faults
    ae_admin.queue_faults(
        written["_ae_base"],
        [
            {"status": 429, "retry_after": 1},
            {"status": 429, "body": "Resource limit: result is too large"},
            {"status": 500},
            {"status": 503},
            {"status": 504},
        ],
    )

    # when a request fails auth it consumes none of them
    assert sql(written, COUNT, headers={"Authorization": "Bearer wrong"}).status_code == 403

    # then the next five requests get them in order, and the sixth a real answer
    answers = [sql(written, COUNT) for _ in range(6)]
    assert [a.status_code for a in answers] == [429, 429, 500, 503, 504, 200]
    assert answers[0].headers["retry-after"] == "1"
    assert answers[0].text.startswith("Resource limit: ")
    assert answers[1].text == "Resource limit: result is too large"
    assert answers[2].text.startswith("Sorry, we were unable to evaluate your query")
    assert all(a.headers["content-type"].startswith("text/plain") for a in answers[:5])


def test_delay_fault_still_answers_normally(written: dict):
    ae_admin.queue_faults(written["_ae_base"], [{"delay_s": 1}])
    started = time.monotonic()
    response = sql(written, COUNT)
    assert time.monotonic() - started >= 1.0
    assert response.json()["data"] == [{"n": len(POINTS)}]


def test_truncate_fault_cuts_the_body_after_n_bytes(written: dict):
    ae_admin.queue_faults(written["_ae_base"], [{"truncate_after_bytes": 40}])
    parts = urlsplit(written["AE_SQL_URL"])
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("POST", parts.path, body=COUNT, headers=_auth(written))
    response = conn.getresponse()

    with pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    assert response.status == 200
    assert len(cut.value.partial) == 40
    assert int(response.getheader("Content-Length")) > 40


def _auth(env: dict) -> dict:
    return {"Authorization": f"Bearer {env['AE_API_TOKEN']}"}


def test_quote_int64_fault_quotes_64_bit_integers(written: dict):
    ae_admin.queue_faults(written["_ae_base"], [{"quote_int64": True}])
    assert sql(written, COUNT).json()["data"] == [{"n": str(len(POINTS))}]
    assert sql(written, COUNT).json()["data"] == [{"n": len(POINTS)}]


def test_drop_rows_fault_keeps_the_original_row_count(written: dict):
    ae_admin.queue_faults(written["_ae_base"], [{"drop_rows": 1}])
    query = "SELECT index1, count() AS n FROM conformance GROUP BY index1 FORMAT JSON"
    doc = sql(written, query).json()
    assert doc["rows"] == 3
    assert len(doc["data"]) == 2


def test_rename_column_fault_renames_meta_and_every_row(written: dict):
    ae_admin.queue_faults(written["_ae_base"], [{"rename_column": {"from": "n", "to": "m"}}])
    query = "SELECT index1, count() AS n FROM conformance GROUP BY index1 FORMAT JSON"
    doc = sql(written, query).json()
    assert [column["name"] for column in doc["meta"]] == ["index1", "m"]
    assert all(set(row) == {"index1", "m"} for row in doc["data"])


def test_unknown_fault_keys_are_refused(ae_reset: str):
    response = httpx.post(f"{ae_reset}/emulator/faults", json={"faults": [{"explode": True}]})
    assert response.status_code == 400


# -- A separate emulator process: persistence and the real timeout ----------------------------


class Emulator:
    def __init__(self, home: Path, token: str) -> None:
        self.home, self.token = home, token
        self.port = stack.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "loaders.emulators.ae", "--home", str(self.home),
                   "--port", str(self.port), "--account-id", "acct",
                   "--query-timeout-s", "1"]  # fmt: skip
        env = {**os.environ, "CLICKS_EMULATOR_CREDENTIAL": self.token}
        log = (self.home.parent / "emulator.log").open("ab")
        self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                if httpx.get(f"{self.base}/emulator/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("the second emulator did not start")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=15)

    def sql(self, query: str) -> httpx.Response:
        url = f"{self.base}/client/v4/accounts/acct/analytics_engine/sql"
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.post(url, content=query, headers=headers, timeout=30)


@pytest.fixture
def own_emulator(tmp_path: Path) -> Iterator[Emulator]:
    emulator = Emulator(tmp_path / "home", "tok_" + os.urandom(8).hex())
    emulator.start()
    yield emulator
    if emulator.proc and emulator.proc.poll() is None:
        emulator.stop()


def test_data_persists_across_a_restart_and_slow_queries_answer_504(own_emulator: Emulator):
    # Given points written to an emulator that is then stopped and started on the same home
    ae_admin.write_points(own_emulator.base, "kept", POINTS[:10])
    own_emulator.stop()
    own_emulator.start()

    # when it is queried again, then the points are still there
    answer = rows(own_emulator.sql("SELECT count() AS n FROM kept FORMAT JSONEachRow"))
    assert answer == [{"n": 10}]

    # and a query past its 1 s timeout answers 504
    slow = own_emulator.sql("SELECT sleepEachRow(2) FROM kept LIMIT 1")
    assert slow.status_code == 504
    assert slow.text.startswith("Query timed out")
