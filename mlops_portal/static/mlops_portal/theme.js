// Loaded in <head>, before the page paints: the colour theme the user chose (or their
// system's), so a dark page never flashes light. The toggle itself is in portal.js.
(function () {
  "use strict";
  var chosen = null;
  try { chosen = window.localStorage.getItem("portal-theme"); } catch (e) { /* private mode */ }
  var dark = chosen ? chosen === "dark"
    : window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.setAttribute("data-bs-theme", dark ? "dark" : "light");
})();
