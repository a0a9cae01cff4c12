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

// htmx does not swap error answers: show the error page's message at the top instead (an
// expired session, a refused action), so a partial update never fails silently.
document.addEventListener("htmx:responseError", function (event) {
  var flash = document.getElementById("flash");
  if (!flash) return;
  var text = "The server answered " + event.detail.xhr.status;
  try {
    var doc = new DOMParser().parseFromString(event.detail.xhr.responseText, "text/html");
    var alert = doc.querySelector("main [role=alert]:not(#flash)") || doc.querySelector(".error");
    if (alert && alert.textContent.trim()) text = alert.textContent.trim();
  } catch (e) { /* keep the status */ }
  flash.textContent = text;
  flash.hidden = false;
});
