(function () {
  "use strict";
  var items = Array.prototype.slice.call(document.querySelectorAll(".item"));
  var sheet = document.body.getAttribute("data-sheet");
  var store = "tunegate-ratings-" + sheet;
  var rater = document.getElementById("rater");
  var message = document.getElementById("message");
  var ratings = {};
  try { ratings = JSON.parse(window.localStorage.getItem(store) || "{}") || {}; } catch (e) { ratings = {}; }
  try { rater.value = window.localStorage.getItem(store + "-rater") || ""; } catch (e) { /* storage unavailable */ }
  var i = 0;
  var names = { a: "A is better", tie: "tie", b: "B is better" };
  function id(k) { return items[k].getAttribute("data-item"); }
  function save() {
    try {
      window.localStorage.setItem(store, JSON.stringify(ratings));
      window.localStorage.setItem(store + "-rater", rater.value);
    } catch (e) { /* storage unavailable: the download still works */ }
  }
  function update() {
    var done = items.filter(function (el, k) { return ratings.hasOwnProperty(id(k)); }).length;
    document.getElementById("progress").textContent = "pair " + (i + 1) + " of " + items.length + ", " + done + " rated";
    var cur = ratings[id(i)];
    document.getElementById("current").textContent = cur ? "your rating: " + names[cur] : "not rated yet";
    Array.prototype.forEach.call(document.querySelectorAll("button[data-rate]"), function (b) {
      b.className = b.getAttribute("data-rate") === cur ? "chosen" : "";
    });
  }
  function show(k) {
    i = Math.max(0, Math.min(items.length - 1, k));
    items.forEach(function (el, j) { el.hidden = j !== i; });
    update();
  }
  function rate(r) {
    if (!items.length) { return; }
    ratings[id(i)] = r;
    save();
    if (i < items.length - 1) { show(i + 1); } else { update(); }
  }
  function download() {
    var name = rater.value.trim();
    if (!name) { message.textContent = "Enter your name first."; rater.focus(); return; }
    var lines = [];
    items.forEach(function (el, k) {
      var r = ratings[id(k)];
      if (r) { lines.push(JSON.stringify({ sheet: sheet, item: id(k), rater: name, rating: r })); }
    });
    var blob = new Blob([lines.join("\n") + (lines.length ? "\n" : "")], { type: "application/x-ndjson" });
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "ratings-" + name.replace(/[^A-Za-z0-9_.-]/g, "_") + ".jsonl";
    document.body.appendChild(a);
    a.click();
    a.parentNode.removeChild(a);
    message.textContent = lines.length + " ratings saved to " + a.download;
  }
  document.addEventListener("keydown", function (e) {
    if (e.target === rater || e.ctrlKey || e.metaKey || e.altKey) { return; }
    if (e.key === "1") { rate("a"); } else if (e.key === "2") { rate("tie"); } else if (e.key === "3") { rate("b"); }
    else if (e.key === "ArrowRight") { show(i + 1); } else if (e.key === "ArrowLeft") { show(i - 1); }
  });
  Array.prototype.forEach.call(document.querySelectorAll("button[data-rate]"), function (b) {
    b.addEventListener("click", function () { rate(b.getAttribute("data-rate")); });
  });
  document.getElementById("prev").addEventListener("click", function () { show(i - 1); });
  document.getElementById("next").addEventListener("click", function () { show(i + 1); });
  document.getElementById("download").addEventListener("click", download);
  rater.addEventListener("change", save);
  show(0);
})();
