"""Plotly figures: a check's latency and availability, serving metrics, drift (plotly.js is
served locally)."""

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlops_portal.core.figures import figure_html

# Up to this many points, each is drawn as a marker too: one probe is a dot, not nothing.
MARKERS_UP_TO = 30


def check_chart(points, title: str, since=None, until=None) -> str:
    """Latency (p50/p95, or each probe for raw data) above availability per bucket, over
    the whole range asked for ([since, until]) whatever part of it has data; '' when no
    point falls in it (the page says so instead of drawing an empty frame)."""
    if not points:
        return ""
    times = [p.t for p in points]
    mode = "lines+markers" if len(points) <= MARKERS_UP_TO else "lines"
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35],
                           vertical_spacing=0.06)  # fmt: skip
    figure.add_trace(go.Scatter(x=times, y=[p.p50 for p in points], name="latency p50 (ms)",
                                mode=mode, line={"width": 1.5}), row=1, col=1)  # fmt: skip
    if any(p.p95 != p.p50 for p in points):
        figure.add_trace(go.Scatter(x=times, y=[p.p95 for p in points], name="p95 (ms)",
                                    mode=mode, line={"width": 1, "dash": "dot"}),
                         row=1, col=1)  # fmt: skip
    availability = [None if p.availability is None else p.availability * 100 for p in points]
    colours = ["#dc3545" if (a is not None and a < 100) else "#198754" for a in availability]
    figure.add_trace(go.Bar(x=times, y=availability, name="availability (%)",
                            marker_color=colours), row=2, col=1)  # fmt: skip
    # Latency from 0 to a little above the highest value: a flat line at 20 ms must not
    # fill the chart as if it varied, nor shrink the axis to fractions of a millisecond.
    highest = max((v for p in points for v in (p.p50, p.p95) if v is not None), default=0)
    figure.update_yaxes(title_text="ms", row=1, col=1, range=[0, (highest or 1) * 1.15])
    figure.update_yaxes(title_text="% ok", row=2, col=1, range=[0, 100])
    if since is not None and until is not None:
        figure.update_xaxes(range=[since, until])
    # The title on top, the legend under the chart: they never overlap.
    figure.update_layout(height=440, margin={"l": 50, "r": 10, "t": 36, "b": 60},
                         title={"text": title, "font": {"size": 14}}, showlegend=True,
                         legend={"orientation": "h", "y": -0.12, "x": 0}, bargap=0)  # fmt: skip
    return figure_html(figure, {"displaylogo": False, "responsive": True})


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


def live_quality_chart(hours, regression: bool, offline: tuple[str, float] | None) -> str:
    """Live accuracy (or MAE) per hour of prediction beside the offline metric from
    registration (a dashed line), over the labelled predictions per hour; '' without data."""
    hours = [h for h in hours if h.labelled]
    if not hours:
        return ""
    times = [h.hour for h in hours]
    name = "MAE" if regression else "accuracy (%)"
    values = [h.mae if regression else h.accuracy * 100 for h in hours]
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                           row_heights=[0.7, 0.3])  # fmt: skip
    figure.add_trace(go.Scatter(x=times, y=values, name=f"live {name}", mode="lines+markers",
                                line={"color": "#0d6efd"}), row=1, col=1)  # fmt: skip
    if offline is not None:
        metric, value = offline
        shown = value if regression else value * 100 if value <= 1 else value
        figure.add_trace(go.Scatter(x=[times[0], times[-1]], y=[shown, shown], mode="lines",
                                    name=f"offline {metric} (registration)",
                                    line={"color": "#6c757d", "dash": "dash"}),
                         row=1, col=1)  # fmt: skip
    figure.add_trace(go.Bar(x=times, y=[h.labelled for h in hours], name="labelled predictions",
                            marker_color="#adb5bd"), row=2, col=1)  # fmt: skip
    figure.update_yaxes(title_text=name, row=1, col=1, rangemode="tozero")
    figure.update_yaxes(title_text="labelled", row=2, col=1, rangemode="tozero")
    figure.update_layout(height=420, margin={"l": 60, "r": 10, "t": 30, "b": 30},
                         title={"text": f"Live {name}, last 7 days (per hour of prediction)",
                                "font": {"size": 14}},
                         legend={"orientation": "h", "y": -0.15}, bargap=0)  # fmt: skip
    return figure_html(figure, {"displaylogo": False})


DRIFT_LINES_SHOWN = 8  # the most drifted features; the rest are in the table


def drift_chart(series, title: str) -> str:
    """PSI over time: one line for the predictions and for each of the most drifted
    features, with the warn (0.1) and drift (0.25) levels; '' without data."""
    if not series:
        return ""
    lines: dict[str, tuple[list, list]] = {}
    for end, name, value in series:
        times, values = lines.setdefault(name, ([], []))
        times.append(end)
        values.append(value)
    ranked = sorted((n for n in lines if n != "prediction"), key=lambda n: -max(lines[n][1]))
    shown = (["prediction"] if "prediction" in lines else []) + ranked[:DRIFT_LINES_SHOWN]
    figure = go.Figure()
    for name in shown:
        times, values = lines[name]
        width = 2.5 if name == "prediction" else 1.5
        figure.add_trace(go.Scatter(x=times, y=values, name=name, mode="lines+markers",
                                    line={"width": width}))  # fmt: skip
    figure.add_hline(y=0.1, line={"color": "#ffc107", "dash": "dot"}, annotation_text="warn")
    figure.add_hline(y=0.25, line={"color": "#dc3545", "dash": "dot"}, annotation_text="drift")
    figure.update_yaxes(title_text="PSI", rangemode="tozero")
    figure.update_layout(height=360, margin={"l": 50, "r": 10, "t": 36, "b": 60},
                         title={"text": title, "font": {"size": 14}},
                         legend={"orientation": "h", "y": -0.15, "x": 0})  # fmt: skip
    return figure_html(figure, {"displaylogo": False, "responsive": True})
