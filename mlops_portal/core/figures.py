"""Plotly figures on a page under the Content-Security-Policy, which refuses inline
scripts: a figure travels as JSON in a data attribute of its <div>, and the static
mlops_portal/charts.js draws every such <div> with the portal's own plotly.js (on load and
after each htmx swap). A template showing one loads plotly.min.js, then charts.js."""

from django.utils.html import format_html
from django.utils.safestring import SafeString
from plotly.io.json import to_json_plotly


def figure_html(figure, config: dict | None = None) -> SafeString:
    """The <div> for `figure`; plotly's own JSON encoder handles numpy arrays and dates."""
    payload = to_json_plotly({"figure": figure.to_plotly_json(), "config": config or {}})
    # The class is Plotly's own name for a figure's <div>, as `Figure.to_html` gives it.
    return format_html('<div class="plotly-graph-div" data-figure="{}"></div>', payload)
