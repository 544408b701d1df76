// Draws ```mermaid blocks of documentation pages, also those the live preview swaps in.
// A static file, loaded after mermaid.min.js, because the CSP allows no inline script.
(function () {
  "use strict";
  mermaid.initialize({startOnLoad: true, securityLevel: "strict"});
  document.body.addEventListener("htmx:afterSwap", function () {
    mermaid.run({querySelector: "pre.mermaid:not([data-processed])"});
  });
})();
