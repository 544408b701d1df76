"""Plotly figures of a check's latency and availability (plotly.js is served locally)."""

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlops_portal.core.figures import figure_html


def check_chart(points, title: str) -> str:
    """Latency (p50/p95, or each probe for raw data) above availability per bucket."""
    if not points:
        return ""
    times = [p.t for p in points]
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35],
                           vertical_spacing=0.06)  # fmt: skip
    figure.add_trace(go.Scatter(x=times, y=[p.p50 for p in points], name="latency p50 (ms)",
                                mode="lines", line={"width": 1.5}), row=1, col=1)  # fmt: skip
    if any(p.p95 != p.p50 for p in points):
        figure.add_trace(go.Scatter(x=times, y=[p.p95 for p in points], name="p95 (ms)",
                                    mode="lines", line={"width": 1, "dash": "dot"}),
                         row=1, col=1)  # fmt: skip
    availability = [None if p.availability is None else p.availability * 100 for p in points]
    colours = ["#dc3545" if (a is not None and a < 100) else "#198754" for a in availability]
    figure.add_trace(go.Bar(x=times, y=availability, name="availability (%)",
                            marker_color=colours), row=2, col=1)  # fmt: skip
    figure.update_yaxes(title_text="ms", row=1, col=1, rangemode="tozero")
    figure.update_yaxes(title_text="% ok", row=2, col=1, range=[0, 100])
    figure.update_layout(height=420, margin={"l": 50, "r": 10, "t": 30, "b": 30},
                         title={"text": title, "font": {"size": 14}}, showlegend=True,
                         legend={"orientation": "h", "y": 1.08}, bargap=0)  # fmt: skip
    return figure_html(figure, {"displaylogo": False})


def sparkline_points(values, width=120, height=24) -> str:
    """SVG polyline points for a list of numbers (None = gap, drawn at the baseline)."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    top = max(known) or 1.0
    step = width / max(len(values) - 1, 1)
    return " ".join(
        f"{i * step:.1f},{height - (v or 0) / top * (height - 2) - 1:.1f}"
        for i, v in enumerate(values)
    )


def serving_chart(points, title: str) -> str:
    """Traffic, error rate, latency p50/p95/p99 and the share of each predicted class over
    time, one row each on a shared time axis; '' without data."""
    if not points:
        return ""
    times = [p.t for p in points]
    figure = make_subplots(rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.05,
                           row_heights=[0.22, 0.2, 0.3, 0.28])  # fmt: skip
    figure.add_trace(go.Bar(x=times, y=[p.requests for p in points], name="requests",
                            marker_color="#0d6efd"), row=1, col=1)  # fmt: skip
    rates = [None if p.error_rate is None else p.error_rate * 100 for p in points]
    figure.add_trace(go.Scatter(x=times, y=rates, name="error rate (%)", mode="lines",
                                line={"color": "#dc3545"}), row=2, col=1)  # fmt: skip
    for name, values, dash in (("p50", [p.p50 for p in points], None),
                               ("p95", [p.p95 for p in points], "dot"),
                               ("p99", [p.p99 for p in points], "dash")):  # fmt: skip
        figure.add_trace(go.Scatter(x=times, y=values, name=f"latency {name} (ms)", mode="lines",
                                    line={"width": 1.5, "dash": dash}), row=3, col=1)  # fmt: skip
    labels = sorted({label for p in points for label in p.predictions})
    for label in labels:
        shares = [_share(p.predictions, label) for p in points]
        figure.add_trace(go.Bar(x=times, y=shares, name=f"class {label}"), row=4, col=1)
    figure.update_yaxes(title_text="requests", row=1, col=1, rangemode="tozero")
    figure.update_yaxes(title_text="% errors", row=2, col=1, rangemode="tozero")
    figure.update_yaxes(title_text="ms", row=3, col=1, rangemode="tozero")
    figure.update_yaxes(title_text="% of predictions", row=4, col=1, range=[0, 100])
    figure.update_layout(height=640, margin={"l": 60, "r": 10, "t": 30, "b": 30},
                         title={"text": title, "font": {"size": 14}}, barmode="stack",
                         legend={"orientation": "h", "y": -0.08}, bargap=0)  # fmt: skip
    return figure_html(figure, {"displaylogo": False})


def _share(predictions: dict, label: str) -> float | None:
    total = sum(predictions.values())
    return predictions.get(label, 0) / total * 100 if total else None
