"""InfluxQL targets and annotations for grafana-foundation-sdk dashboards.

The SDK's 11.2 build (the one matching docker-compose's Grafana 11.2) ships
query types for Prometheus, Loki, Elasticsearch and others, but none for
InfluxDB; and its annotation model has only the fields of Grafana's built-in
annotations, not the ``query`` and ``textColumn`` an InfluxQL annotation
reads.  These are the two, as cog models and builders of the same shape as
the SDK's own (a model with ``to_json``, a builder whose ``build()`` returns
it), so ``Panel.targets()`` and ``Dashboard.annotations()`` take them as
they take the SDK's.

Only raw InfluxQL (``rawQuery``) is modelled: every liveprof query is text
(build_dashboards.py writes it), and Grafana's visual query editor fields
(``select``, ``groupBy``, ``tags``) would be ignored next to it anyway.
"""

from __future__ import annotations

from typing import Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as model

DS_UID = "liveprof-influxdb"
DS = model.DataSourceRef(type_val="influxdb", uid=DS_UID)

ResultFormat = Literal["time_series", "table", "logs"]


class InfluxQLQuery(cogvariants.Dataquery):
    """One target of Grafana's InfluxDB datasource in InfluxQL mode, as text."""

    def __init__(self, ref_id: str = "", query: str = "", alias: str | None = None,
                 result_format: ResultFormat = "time_series",
                 datasource: model.DataSourceRef | None = None) -> None:
        self.ref_id = ref_id
        self.query = query
        self.alias = alias  # the legend: $col, $tag_<key>
        self.result_format = result_format
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"refId": self.ref_id}
        if self.datasource is not None:
            out["datasource"] = self.datasource
        out.update(query=self.query, rawQuery=True, resultFormat=self.result_format)
        if self.alias is not None:
            out["alias"] = self.alias
        return out


class Query(cogbuilder.Builder[InfluxQLQuery]):
    """Builds an ``InfluxQLQuery`` on the liveprof datasource."""

    def __init__(self, ref_id: str, query: str) -> None:
        self._internal = InfluxQLQuery(ref_id, query, datasource=DS)

    def build(self) -> InfluxQLQuery:
        return self._internal

    def alias(self, alias: str) -> Self:
        self._internal.alias = alias
        return self

    def result_format(self, result_format: ResultFormat) -> Self:
        self._internal.result_format = result_format
        return self

    def datasource(self, datasource: model.DataSourceRef) -> Self:
        self._internal.datasource = datasource
        return self


class InfluxQLAnnotation(model.AnnotationQuery):
    """An annotation read by an InfluxQL query: one event per row, its text
    (and optionally tags and title) from the named columns."""

    def __init__(self, name: str = "", query: str = "", text_column: str = "", tags_column: str = "",
                 title_column: str = "", datasource: model.DataSourceRef | None = None, enable: bool = True,
                 hide: bool = False, icon_color: str = "") -> None:
        super().__init__(name=name, datasource=datasource, enable=enable, hide=hide, icon_color=icon_color)
        self.query = query
        self.text_column = text_column
        self.tags_column = tags_column
        self.title_column = title_column

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "query": self.query, "textColumn": self.text_column,
                "tagsColumn": self.tags_column, "titleColumn": self.title_column}


class AnnotationQuery(cogbuilder.Builder[model.AnnotationQuery]):
    """Builds an ``InfluxQLAnnotation`` on the liveprof datasource, enabled."""

    def __init__(self, name: str) -> None:
        self._internal = InfluxQLAnnotation(name, datasource=DS)

    def build(self) -> InfluxQLAnnotation:
        return self._internal

    def query(self, query: str) -> Self:
        self._internal.query = query
        return self

    def text_column(self, column: str) -> Self:
        self._internal.text_column = column
        return self

    def tags_column(self, column: str) -> Self:
        self._internal.tags_column = column
        return self

    def title_column(self, column: str) -> Self:
        self._internal.title_column = column
        return self

    def icon_color(self, color: str) -> Self:
        self._internal.icon_color = color
        return self

    def enable(self, enable: bool) -> Self:
        self._internal.enable = enable
        return self

    def hide(self, hide: bool) -> Self:
        self._internal.hide = hide
        return self
