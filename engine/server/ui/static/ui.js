// Live run pages: a server-sent event stream; each event reloads the parts of the page that
// show the run (hx-get targets marked data-live), then the stream ends with the run.
(function () {
  function start() {
    var root = document.querySelector("[data-run-events]");
    if (!root || !window.EventSource) return;
    var source = new EventSource(root.getAttribute("data-run-events"));
    var pending = false;
    function refresh() {
      if (pending) return;
      pending = true;
      setTimeout(function () {
        pending = false;
        document.querySelectorAll("[data-live]").forEach(function (el) {
          if (window.htmx) htmx.trigger(el, "refresh");
        });
      }, 150);
    }
    ["step", "run"].forEach(function (name) { source.addEventListener(name, refresh); });
    source.addEventListener("end", function () { source.close(); refresh(); });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
