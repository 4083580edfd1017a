(function () {
  "use strict";
  // Sections below the summary are collapsed <details>: open the one a link or the address's #fragment points
  // at, and open all of them while printing (then restore), so "Print to PDF" gives the whole document.
  function reveal() {
    var id = decodeURIComponent((location.hash || "").slice(1));
    var el = id ? document.getElementById(id) : null;
    if (!el) { return; }
    var inner = el.querySelector ? el.querySelector("details.sec") : null;
    if (inner) { inner.open = true; }
    for (var d = el; d; d = d.parentElement) {
      if (d.tagName === "DETAILS") { d.open = true; }
    }
    el.scrollIntoView();
  }
  window.addEventListener("hashchange", reveal);
  reveal();
  var closed = [];
  window.addEventListener("beforeprint", function () {
    closed = Array.prototype.filter.call(document.querySelectorAll("details.sec, details.subgroups"), function (d) { return !d.open; });
    closed.forEach(function (d) { d.open = true; });
  });
  window.addEventListener("afterprint", function () {
    closed.forEach(function (d) { d.open = false; });
    closed = [];
  });
}());
(function () {
  "use strict";
  var table = document.getElementById("explorer");
  if (!table) { return; }
  var body = table.tBodies[0];
  var q = document.getElementById("ex-q");
  var fc = document.getElementById("ex-change");
  var fs = document.getElementById("ex-suite");
  var fm = document.getElementById("ex-cand");
  var shown = document.getElementById("ex-shown");
  function apply() {
    var needle = (q.value || "").toLowerCase();
    var n = 0;
    Array.prototype.forEach.call(body.rows, function (row) {
      var ok = (!fc.value || row.getAttribute("data-change") === fc.value) &&
               (!fs.value || row.getAttribute("data-suite") === fs.value) &&
               (!fm.value || row.getAttribute("data-cand") === fm.value) &&
               (!needle || row.textContent.toLowerCase().indexOf(needle) !== -1);
      row.classList.toggle("hidden", !ok);
      if (ok) { n += 1; }
    });
    shown.textContent = String(n);
  }
  [q, fc, fs, fm].forEach(function (el) { el.addEventListener("input", apply); el.addEventListener("change", apply); });
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
    var key = th.getAttribute("data-sort");
    if (!key) { return; }
    var asc = true;
    th.addEventListener("click", function () {
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v") || a.cells[col].textContent;
        var y = b.cells[col].getAttribute("data-v") || b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (key === "num" && !isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      asc = !asc;
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  apply();
}());
