// Outpost console: the little the pages need beyond htmx. No inline
// script (the Content-Security-Policy forbids it); everything degrades to
// plain links and forms without JavaScript.
(function () {
  "use strict";
  var csrf = document.body.dataset.csrf || "";

  // Every htmx request carries the session's CSRF token.
  document.body.addEventListener("htmx:configRequest", function (e) {
    if (csrf) { e.detail.headers["X-CSRF-Token"] = csrf; }
  });

  // Selects marked data-autosubmit submit their form on change (the
  // tenant switcher); their button stays for keyboards without scripts.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
    s.addEventListener("change", function () { s.form.submit(); });
    var b = s.form.querySelector(".js-hide");
    if (b) { b.hidden = true; }
  });

  // A job page follows the job: state panel and log lines from the
  // server-sent events of /jobs/{id}/events.
  var log = document.getElementById("log");
  if (log && log.dataset.src && window.EventSource) {
    var live = document.getElementById("job-live");
    var es = new EventSource(log.dataset.src);
    es.addEventListener("state", function (e) {
      if (live) { live.innerHTML = e.data; }
    });
    es.addEventListener("log", function (e) {
      var l;
      try { l = JSON.parse(e.data); } catch (err) { return; }
      var row = document.createElement("span");
      row.className = "line " + (l.stream || "");
      row.textContent = l.text + "\n";
      var stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.appendChild(row);
      if (stick) { log.scrollTop = log.scrollHeight; }
    });
    es.addEventListener("end", function () {
      es.close();
      log.dataset.ended = "true";
      var c = document.getElementById("cancel-form");
      if (c) { c.hidden = true; }
    });
  }
})();
