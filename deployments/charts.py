"""Figures and comparisons for the registry pages (Plotly; plotly.js is served locally)."""

import plotly.graph_objects as go

from mlops_portal.core.figures import figure_html


def metric_names(history) -> list[str]:
    """Sorted metric names appearing in `history`, a list of (number, metrics) pairs."""
    return sorted({name for _, metrics in history for name in (metrics or {})})


def metric_chart(history, metric: str) -> str:
    """HTML for a line chart of `metric` across version numbers; '' when nothing to plot."""
    points = [(number, m[metric]) for number, m in history if metric in (m or {})]
    if not points:
        return ""
    figure = go.Figure(
        go.Scatter(
            x=[f"v{number}" for number, _ in points],
            y=[value for _, value in points],
            mode="lines+markers",
            name=metric,
        )
    )
    figure.update_layout(
        height=280,
        margin={"l": 40, "r": 10, "t": 30, "b": 30},
        title={"text": f"{metric} by version", "font": {"size": 14}},
        xaxis={"type": "category"},
    )
    return figure_html(figure, {"displaylogo": False})


def metric_deltas(a, b) -> list[dict]:
    """Rows of metric name, value in a, value in b and b - a (None where one side lacks it)."""
    rows = []
    for name in sorted(set(a.metrics) | set(b.metrics)):
        left, right = a.metrics.get(name), b.metrics.get(name)
        delta = right - left if left is not None and right is not None else None
        rows.append({"name": name, "a": left, "b": right, "delta": delta})
    return rows


def param_diff(a, b) -> list[dict]:
    """Rows for every parameter, flagged `changed` when the two versions differ."""
    rows = []
    for name in sorted(set(a.params) | set(b.params)):
        left, right = a.params.get(name), b.params.get(name)
        rows.append({"name": name, "a": left, "b": right, "changed": left != right})
    return rows


def metric_table(versions) -> list[dict]:
    """Rows of metric name and, per version, its value and the change from the first
    version (the baseline); None where a version lacks the metric."""
    base = versions[0].metrics if versions else {}
    rows = []
    for name in sorted({name for v in versions for name in v.metrics}):
        cells = []
        for index, version in enumerate(versions):
            value = version.metrics.get(name)
            delta = None
            if index and value is not None and base.get(name) is not None:
                delta = value - base[name]
            cells.append({"value": value, "delta": delta})
        rows.append({"name": name, "cells": cells})
    return rows


def param_table(versions) -> list[dict]:
    """Rows for every parameter with its value per version, flagged `changed` when the
    versions do not all agree."""
    rows = []
    for name in sorted({name for v in versions for name in v.params}):
        values = [v.params.get(name) for v in versions]
        rows.append(
            {"name": name, "values": values, "changed": any(x != values[0] for x in values)}
        )
    return rows
