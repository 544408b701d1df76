// Draws the Plotly figures of mlops_portal/figures.py: each <div data-figure> carries its
// figure and config as JSON (the CSP allows no inline script to do it).
(function () {
  "use strict";

  function drawCharts(root) {
    root.querySelectorAll("div[data-figure]:not([data-drawn])").forEach(function (element) {
      var spec = JSON.parse(element.dataset.figure);
      element.dataset.drawn = "true";
      Plotly.newPlot(element, spec.figure.data || [], spec.figure.layout || {}, spec.config);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
  } else {
    drawCharts(document);
  }
  document.addEventListener("htmx:afterSwap", function (event) { drawCharts(event.target); });
})();
