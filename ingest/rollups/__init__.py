"""Downsampling and retention for InfluxDB 1.x, as data (no IO).

The scheme (docs/rollups.md has the full story):

- the database (``influx.database``, default ``liveprof``: the sink's, the
  one place it is set) has a **raw** retention policy (default name ``raw``,
  kept 7 days) which is its DEFAULT policy: the sink writes there;
- **rollup** policies (default ``1m`` kept 90 days, ``1h`` kept 3 years), each
  with a group-by interval; every interval is a multiple of the one before;
- one continuous query per rollup per measurement, ``<prefix>_<rollup>_<measurement>``
  (prefix default ``liveprof``): the first rollup reads raw, each later one
  reads the rollup before it (every output composes exactly, means included,
  through their ``_sum``/``_count`` weights);
- tags are kept (``GROUP BY time(interval), *``); a rollup point is stamped
  with its interval's start.

The modules, along the scheme's parts:

- ``fields``: ``AGGREGATIONS`` says, for every measurement and field liveprof
  emits, which functions roll it up.  The first function's output keeps the
  field's name, so the same query reads raw and rollups alike for that
  aggregate; each further function adds ``_<function>``; a ``mean`` also
  stores ``<field>_sum`` and ``<field>_count``;
- ``durations``: InfluxQL and Go durations;
- ``config``: ``RetentionPolicy``, ``Rollup``, ``RpSwitch``, ``RollupConfig``;
- ``influxql``: the statements (continuous queries, backfills, policies);
- ``rp_switch``: the points the dashboards read to pick a policy;
- ``plan``: ``plan(config, database, observed)`` diffs the wanted state against
  what the server has (``SHOW DATABASES``, ``SHOW RETENTION POLICIES``, ``SHOW
  CONTINUOUS QUERIES``) and returns the steps, each with its InfluxQL;
  ``ingest.influx_setup`` does the IO.
"""

from ingest.rollups.config import RetentionPolicy, Rollup, RollupConfig, RpSwitch
from ingest.rollups.durations import format_duration, parse_duration, parse_go_duration
from ingest.rollups.fields import (
    AGGREGATIONS,
    EVENT,
    FUNCTIONS,
    GAUGE,
    LAST,
    MAX,
    MEAN,
    RATIO,
    SUM,
    SUM_MAX,
    Output,
    measurements_fields,
    outputs,
    uncovered,
)
from ingest.rollups.influxql import (
    alter_policy,
    backfill_queries,
    continuous_queries,
    cq_name,
    cq_statement,
    create_database,
    create_policy,
    drop_cq,
    qualified,
    rollup_query,
    select_fields,
    source_policy,
)
from ingest.rollups.plan import ObservedPolicy, ServerState, Step, normalize_cq, plan, statements
from ingest.rollups.rp_switch import UNBOUNDED_MS, RpLevel, drop_rp_points, rp_levels, rp_points, rp_select
from ingest.sinks.influxdb.influxql import quote_ident, quote_string

__all__ = [
    "AGGREGATIONS", "EVENT", "FUNCTIONS", "GAUGE", "LAST", "MAX", "MEAN", "RATIO", "SUM", "SUM_MAX",
    "UNBOUNDED_MS", "ObservedPolicy", "Output", "RetentionPolicy", "Rollup", "RollupConfig", "RpLevel",
    "RpSwitch", "ServerState", "Step", "alter_policy", "backfill_queries", "continuous_queries", "cq_name",
    "cq_statement", "create_database", "create_policy", "drop_cq", "drop_rp_points", "format_duration",
    "measurements_fields", "normalize_cq", "outputs", "parse_duration", "parse_go_duration", "plan",
    "qualified", "quote_ident", "quote_string", "rollup_query", "rp_levels", "rp_points", "rp_select",
    "select_fields", "source_policy", "statements", "uncovered",
]
