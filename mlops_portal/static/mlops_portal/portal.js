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
})();
