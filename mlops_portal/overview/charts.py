"""Plotly figures of the dashboards page, drawn from the rows of mlops_portal.overview.dashboards
(plotly.js is served locally)."""

import plotly.graph_objects as go
from django.utils.html import format_html

from deployments.choices import DeploymentState
from mlops_portal.core.figures import figure_html
from monitoring.choices import Severity

CONFIG = {"displaylogo": False, "responsive": True}
OUTCOME_COLOURS = {
    DeploymentState.SUCCEEDED: "#198754",
    DeploymentState.SUPERSEDED: "#6c757d",
    DeploymentState.ROLLED_BACK: "#fd7e14",
    DeploymentState.FAILED: "#dc3545",
    DeploymentState.REJECTED: "#6f42c1",
    DeploymentState.CANCELLED: "#adb5bd",
}
SEVERITY_COLOURS = {
    Severity.SEV1: "#842029",
    Severity.SEV2: "#dc3545",
    Severity.SEV3: "#fd7e14",
    Severity.SEV4: "#ffc107",
}


def _html(figure, title: str, y_title: str = "", height: int = 260) -> str:
    if not any(y for trace in figure.data for y in (trace.y or ())):
        # Nothing but zeros and gaps: say so instead of drawing an empty frame.
        return format_html(
            '<div class="chart-empty text-muted text-center border rounded p-4">'
            "<strong>{}</strong><br>No data in this range.</div>",
            title,
        )
    figure.update_layout(
        height=height,
        margin={"l": 50, "r": 10, "t": 36, "b": 30},
        title={"text": title, "font": {"size": 14}},
        yaxis={"title": {"text": y_title}, "rangemode": "tozero"},
        legend={"orientation": "h", "y": -0.2},
        barmode="stack",
    )
    return figure_html(figure, CONFIG)


def _periods(rows) -> list[str]:
    return [row["period_start"] for row in rows]


def _bar(rows, key, name, colour=None):
    return go.Bar(x=_periods(rows), y=[row[key] for row in rows], name=name,
                  marker_color=colour)  # fmt: skip


def _line(rows, key, name):
    return go.Scatter(
        x=_periods(rows), y=[row[key] for row in rows], name=name, mode="lines+markers",
        connectgaps=False,
    )  # fmt: skip


def dora_charts(rows) -> dict[str, str]:
    rate = [
        {**row, "percent": None if row["change_failure_rate"] is None
         else round(100 * row["change_failure_rate"], 1)}
        for row in rows
    ]  # fmt: skip
    return {
        "frequency": _html(go.Figure(_bar(rows, "deployments", "deployments", "#0d6efd")),
                           "Deployment frequency (production)", "deployments"),
        "lead_time": _html(go.Figure([_line(rows, "lead_time_p50_hours", "median"),
                                      _line(rows, "lead_time_p90_hours", "p90")]),
                           "Lead time for changes", "hours"),
        "failure_rate": _html(go.Figure(_bar(rate, "percent", "change failure rate", "#dc3545")),
                              "Change failure rate", "%"),
        "restore": _html(go.Figure(_bar(rows, "time_to_restore_p50_hours", "median",
                                        "#fd7e14")), "Time to restore (median)", "hours"),
    }  # fmt: skip


def outcome_chart(rows) -> str:
    present = [(s, label) for s, label in DeploymentState.choices if any(r[s] for r in rows)]
    bars = [_bar(rows, state, label, OUTCOME_COLOURS.get(state)) for state, label in present]
    return _html(go.Figure(bars), "Deployments by outcome (state now)", "deployments")


def approval_chart(rows) -> str:
    lines = [_line(rows, "wait_p50_hours", "median"), _line(rows, "wait_p90_hours", "p90")]
    return _html(go.Figure(lines), "Approval wait", "hours")


def incident_charts(rows) -> dict[str, str]:
    bars = [_bar(rows, severity, label, SEVERITY_COLOURS[severity])
            for severity, label in Severity.choices]  # fmt: skip
    lines = [_line(rows, "mtta_hours", "MTTA"), _line(rows, "mttr_hours", "MTTR")]
    return {
        "by_severity": _html(go.Figure(bars), "Incidents by severity", "incidents"),
        "mtta_mttr": _html(go.Figure(lines), "MTTA and MTTR (means)", "hours"),
    }


def health_chart(rows) -> str:
    if not rows:
        return ""
    figure = go.Figure(
        go.Bar(
            x=[row["target"] for row in rows],
            y=[None if row["availability"] is None else 100 * row["availability"] for row in rows],
            name="availability",
            marker_color="#198754",
        )
    )
    return _html(figure, "Availability per target", "%")
