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

  // The one-time token secret (and anything marked data-copy="#id"): a Copy button.
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent.trim();
    var done = function () {
      button.textContent = "Copied";
      button.setAttribute("aria-live", "polite");
      window.setTimeout(function () { button.textContent = "Copy"; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectAndCopy(source, done); });
    } else {
      selectAndCopy(source, done);
    }
  });
  function selectAndCopy(node, done) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    if (document.execCommand("copy")) done();  // else the text stays selected for Ctrl-C
  }

  // Dark mode: the navbar's toggle flips the theme and remembers it (theme.js applies it).
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest && event.target.closest("[data-theme-toggle]");
    if (!toggle) return;
    var root = document.documentElement;
    var next = root.getAttribute("data-bs-theme") === "dark" ? "light" : "dark";
    root.setAttribute("data-bs-theme", next);
    try { window.localStorage.setItem("portal-theme", next); } catch (e) { /* private mode */ }
    toggle.setAttribute("aria-pressed", next === "dark" ? "true" : "false");
  });
  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.querySelector("[data-theme-toggle]");
    if (toggle) {
      var dark = document.documentElement.getAttribute("data-bs-theme") === "dark";
      toggle.setAttribute("aria-pressed", dark ? "true" : "false");
    }
  });

  // "/" anywhere but in a text field jumps to the search box (as on GitHub or MDN).
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName)) return;
    var search = document.getElementById("site-search");
    if (!search) return;
    event.preventDefault();
    search.focus();
    search.select();
  });
})();
