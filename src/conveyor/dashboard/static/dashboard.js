// Conveyor dashboard: live refresh of the #live region, confirmations, select-all.
// Pages are complete without this script; it only keeps them current.
(function () {
  "use strict";

  function fragmentUrl() {
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    url.searchParams.delete("done");
    url.searchParams.delete("n");
    return url.toString();
  }

  // Leave the region alone while someone is using it: a focused field, a ticked box.
  function busy(region) {
    var active = document.activeElement;
    if (active && active !== document.body && region.contains(active) &&
        (active.tagName === "INPUT" || active.tagName === "SELECT" || active.tagName === "TEXTAREA")) {
      return true;
    }
    return region.querySelector("input[type=checkbox]:checked") !== null;
  }

  function startRefresh(region) {
    var every = parseInt(region.getAttribute("data-refresh") || "0", 10);
    if (!every) { return; }
    var inFlight = false;
    window.setInterval(function () {
      if (inFlight || document.hidden || busy(region)) { return; }
      inFlight = true;
      fetch(fragmentUrl(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (response.status === 401) { window.location.reload(); return null; }
          return response.ok ? response.text() : null;
        })
        .then(function (html) {
          if (html !== null && !busy(region)) {
            region.innerHTML = html;
            region.setAttribute("data-updated", String(Date.now()));
          }
        })
        .catch(function () { /* offline for a moment: try again next tick */ })
        .then(function () { inFlight = false; });
    }, every);
  }

  // Forms and buttons with data-confirm ask first (without JS they submit at once).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var button = event.submitter;
    var text = (button && button.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (text && !window.confirm(text)) { event.preventDefault(); }
  });

  document.addEventListener("change", function (event) {
    var box = event.target;
    var name = box.getAttribute && box.getAttribute("data-select-all");
    if (!name) { return; }
    var form = box.form || document;
    form.querySelectorAll("input[type=checkbox][name='" + name + "']").forEach(function (other) {
      other.checked = box.checked;
    });
  });

  document.addEventListener("DOMContentLoaded", function () {
    var region = document.getElementById("live");
    if (region) { startRefresh(region); }
  });
})();
