// Small behaviours of every page, kept out of the HTML because the CSP allows no inline
// script or event handler attribute.
(function () {
  "use strict";
  // <select data-autosubmit>: choosing an option submits its form (e.g. a model's metric).
  document.addEventListener("change", function (event) {
    var field = event.target;
    if (field.matches && field.matches("[data-autosubmit]") && field.form) {
      field.form.submit();
    }
  });

  // A box that scrolls (a wide table on a phone, a long job log) must be
  // reachable from the keyboard: give it a tab stop only while it scrolls.
  var SCROLLERS = ".table-responsive, pre, .markdown-body table";
  function markScrollers(root) {
    (root || document).querySelectorAll(SCROLLERS).forEach(function (box) {
      var scrolls = box.scrollWidth > box.clientWidth + 1 || box.scrollHeight > box.clientHeight + 1;
      if (scrolls && !box.hasAttribute("tabindex")) {
        box.setAttribute("tabindex", "0");
        box.setAttribute("data-scroll-stop", "");
      } else if (!scrolls && box.hasAttribute("data-scroll-stop")) {
        box.removeAttribute("tabindex");
        box.removeAttribute("data-scroll-stop");
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { markScrollers(); });
  window.addEventListener("resize", function () { markScrollers(); });
  document.addEventListener("htmx:afterSettle", function (event) { markScrollers(event.target); });
})();
