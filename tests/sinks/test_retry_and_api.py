"""Pure parts of the sink: status classification, backoff, /write error parsing, quoting."""

from __future__ import annotations

import random

import pytest

from ingest.backoff import Backoff
from ingest.sinks.errors import InfluxQueryError
from ingest.sinks.influxdb.client import parse_query_result, parse_write_error
from ingest.sinks.influxdb.influxql import quote_ident, quote_string
from ingest.sinks.influxdb.retry import Action, classify, retry_after


@pytest.mark.parametrize(
    ("status", "action"),
    [(200, Action.OK), (204, Action.OK), (400, Action.DROP), (422, Action.DROP), (401, Action.FATAL),
     (403, Action.FATAL), (404, Action.FATAL), (408, Action.RETRY), (413, Action.SPLIT), (429, Action.RETRY),
     (500, Action.RETRY), (501, Action.DROP), (502, Action.RETRY), (503, Action.RETRY), (504, Action.RETRY)],
)
def test_classify(status, action):
    assert classify(status) is action


def test_backoff_grows_with_jitter_up_to_its_cap():
    b = Backoff(0.1, 2.0, rng=random.Random(1))
    delays = [b.next() for _ in range(12)]
    highs = [min(2.0, 0.1 * 2**n) for n in range(12)]
    assert all(h / 2 <= d <= h for d, h in zip(delays, highs))
    assert len(set(delays)) == len(delays)  # jittered
    b.reset()
    assert b.next() <= 0.1
    with pytest.raises(ValueError):
        Backoff(1.0, 0.5)


def test_backoff_stays_at_its_cap_through_an_outage_of_any_length():
    """A sink retries forever by default: thousands of attempts (hours of
    outage) keep giving delays at the cap instead of overflowing 2.0 ** n."""
    b = Backoff(0.2, 30.0, rng=random.Random(2))
    delays = [b.next() for _ in range(5000)]
    assert all(15.0 <= d <= 30.0 for d in delays[20:])


def test_retry_after():
    assert retry_after("3") == 3.0
    assert retry_after(None) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None


# answers of influxd 1.6.7, as received
PARTIAL_PARSE = ('{"error":"partial write: unable to parse \'bad line here\': invalid field format\\n'
                 'unable to parse \'m,x v= 3\': missing tag value dropped=0"}\n')
PARTIAL_CONFLICT = ('{"error":"partial write: field type conflict: input field \\"v\\" '
                    'on measurement \\"m\\" is type float, already exists as type integer dropped=1"}\n')
ALL_BAD = '{"error":"unable to parse \'bad line here\': invalid field format"}\n'


def test_partial_write_names_each_unparsable_line():
    err = parse_write_error(PARTIAL_PARSE, ["m v=1i 1", "bad line here", "m,x v= 3"])
    assert err.partial and err.dropped == 0
    assert err.bad_lines == ["bad line here", "m,x v= 3"]


def test_partial_write_of_a_type_conflict_names_no_line():
    err = parse_write_error(PARTIAL_CONFLICT)
    assert err.partial and err.dropped == 1 and err.bad_lines == []
    assert err.message.startswith("partial write: field type conflict")


def test_a_refusal_of_every_line_is_not_partial():
    err = parse_write_error(ALL_BAD, ["bad line here"])
    assert not err.partial and err.bad_lines == ["bad line here"]


def test_a_line_holding_quote_colon_space_is_matched_against_the_batch():
    line = "m s=\"it': odd\" 1"
    body = '{"error":"unable to parse \'' + line.replace('"', '\\"') + '\': bad timestamp"}'
    assert parse_write_error(body, [line, "m v=1i 2"]).bad_lines == [line]
    assert parse_write_error("plain text error").message == "plain text error"


def test_parse_query_result():
    data = {"results": [{"statement_id": 0, "series": [
        {"name": "m", "tags": {"app": "a"}, "columns": ["time", "v"], "values": [[1, 2]]}]}]}
    (s,) = parse_query_result(data)
    assert (s.name, s.tags, s.rows()) == ("m", {"app": "a"}, [{"time": 1, "v": 2}])
    assert parse_query_result({"results": [{"statement_id": 0}]}) == []
    with pytest.raises(InfluxQueryError, match="boom"):
        parse_query_result({"results": [{"statement_id": 0, "error": "boom"}]})


def test_quoting():
    assert quote_ident('a"b') == '"a\\"b"'
    assert quote_string("it's") == "'it\\'s'"
