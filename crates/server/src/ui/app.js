// warrant console: keyboard navigation and live countdowns. No dependencies.
(function () {
  "use strict";
  var pendingG = false, gTimer = null;
  function editing(el) {
    return el && (el.tagName === "INPUT" || el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable);
  }
  function rows() {
    var t = document.querySelector("table[data-list] tbody");
    return t ? Array.prototype.slice.call(t.rows) : [];
  }
  function move(d) {
    var r = rows(); if (!r.length) return;
    var i = r.findIndex(function (x) { return x.classList.contains("sel"); });
    if (i >= 0) r[i].classList.remove("sel");
    i = Math.max(0, Math.min(r.length - 1, i + d));
    r[i].classList.add("sel"); r[i].tabIndex = -1; r[i].focus();
  }
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || editing(e.target)) return;
    if (pendingG) {
      pendingG = false; clearTimeout(gTimer);
      var link = document.querySelector('nav a[data-keys="g ' + e.key + '"]');
      if (link) { e.preventDefault(); link.click(); }
      return;
    }
    if (e.key === "g") { pendingG = true; gTimer = setTimeout(function () { pendingG = false; }, 1200); return; }
    if (e.key === "/") { var s = document.querySelector("[data-search]"); if (s) { e.preventDefault(); s.focus(); } return; }
    if (e.key === "j") { e.preventDefault(); move(1); return; }
    if (e.key === "k") { e.preventDefault(); move(-1); return; }
    if (e.key === "Enter") {
      var sel = document.querySelector("table[data-list] tr.sel a");
      if (sel) { e.preventDefault(); sel.click(); }
    }
  });
  function fmt(ms) {
    var s = Math.max(0, Math.floor(ms / 1000)), d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600),
        m = Math.floor((s % 3600) / 60);
    if (d > 0) return d + "d " + h + "h";
    if (h > 0) return h + "h " + m + "m";
    if (m > 0) return m + "m " + (s % 60) + "s";
    return s + "s";
  }
  var start = Date.now();
  var timers = Array.prototype.slice.call(document.querySelectorAll("[data-deadline-ms]"));
  if (timers.length) {
    setInterval(function () {
      timers.forEach(function (t) {
        var leftMs = parseInt(t.getAttribute("data-deadline-ms"), 10) - (Date.now() - start);
        t.textContent = leftMs > 0 ? fmt(leftMs) : "0s (ended)";
      });
    }, 1000);
  }
})();
