// backprop-bench site: the explorer's filters and sorting, and the copy buttons of the cite blocks.
// No data is fetched (browsers refuse to fetch files from file://): the rows are in the page and are hidden or
// reordered in place. Filters are kept in the address (#method=lora&hardware=...) so a view can be linked.
"use strict";

(function () {
  var NUMBER = /^-?\d+(\.\d+)?(e[-+]?\d+)?$/i; // how the pages write a number in data-v (Python's repr)
  function copyButtons() {
    document.querySelectorAll("button.copy").forEach(function (button) {
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        var status = button.parentNode.querySelector(".copied");
        var text = source.textContent;
        function done(ok) {
          status.textContent = ok ? "Copied." : "Select the text above and copy it (Ctrl+C).";
        }
        function fallback() {
          var range = document.createRange();
          range.selectNodeContents(source);
          var selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          var ok = false;
          try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
          done(ok);
        }
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
        } else {
          fallback();
        }
      });
    });
  }

  // A number column's filter: ">2.5", ">=2", "<1", "<=1", "2..3" (inclusive), "=3"; anything else is text the
  // cell must contain.
  function numberTest(expr) {
    var m = expr.match(/^\s*(>=|<=|>|<|=)\s*(-?[\d.]+(?:e-?\d+)?)\s*$/i);
    if (m) {
      var x = parseFloat(m[2]);
      return function (v) {
        if (isNaN(v)) return false;
        return m[1] === ">" ? v > x : m[1] === ">=" ? v >= x : m[1] === "<" ? v < x : m[1] === "<=" ? v <= x : v === x;
      };
    }
    m = expr.match(/^\s*(-?[\d.]+)\s*\.\.\s*(-?[\d.]+)\s*$/);
    if (m) {
      var lo = parseFloat(m[1]), hi = parseFloat(m[2]);
      return function (v) { return !isNaN(v) && v >= lo && v <= hi; };
    }
    return null;
  }

  function explorer() {
    var table = document.getElementById("records");
    var form = document.getElementById("filters");
    if (!table || !form) return;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.forEach(function (row, i) { row.setAttribute("data-order", String(i)); });
    var controls = Array.prototype.slice.call(form.querySelectorAll("[data-col]"));
    var shown = document.getElementById("shown");

    function cellValue(row, col) { return row.cells[col].getAttribute("data-v"); }

    function apply() {
      var tests = controls.filter(function (c) { return c.value.trim() !== ""; }).map(function (c) {
        var col = parseInt(c.getAttribute("data-col"), 10), kind = c.getAttribute("data-kind");
        var value = c.value.trim();
        if (kind === "choice") return function (row) { return cellValue(row, col) === value; };
        var num = kind === "number" ? numberTest(value) : null;
        if (num) return function (row) { return num(parseFloat(cellValue(row, col))); };
        var needle = value.toLowerCase();
        return function (row) { return row.cells[col].textContent.toLowerCase().indexOf(needle) !== -1; };
      });
      var n = 0;
      rows.forEach(function (row) {
        var ok = tests.every(function (t) { return t(row); });
        row.hidden = !ok;
        if (ok) n += 1;
      });
      shown.textContent = n + " of " + rows.length + " records shown";
      var state = controls.filter(function (c) { return c.value.trim() !== ""; }).map(function (c) {
        return encodeURIComponent(c.name) + "=" + encodeURIComponent(c.value.trim());
      }).join("&");
      if (history.replaceState) history.replaceState(null, "", state ? "#" + state : location.pathname);
    }

    function fromAddress() {
      var pairs = location.hash.replace(/^#/, "").split("&");
      pairs.forEach(function (pair) {
        var kv = pair.split("=");
        if (kv.length !== 2) return;
        var control = form.elements[decodeURIComponent(kv[0])];
        if (control) control.value = decodeURIComponent(kv[1]);
      });
    }

    function sortBy(col, th) {
      var descending = th.getAttribute("aria-sort") === "ascending";
      table.querySelectorAll("th[aria-sort]").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      var sign = descending ? -1 : 1;
      var sorted = rows.slice().sort(function (a, b) {
        var x = cellValue(a, col), y = cellValue(b, col);
        var c;
        if (x === "" && y !== "") c = 1; // missing values last, in either direction
        else if (y === "" && x !== "") c = -1;
        else if (NUMBER.test(x) && NUMBER.test(y)) c = sign * (parseFloat(x) - parseFloat(y));
        else c = sign * x.localeCompare(y);
        return c || (parseInt(a.getAttribute("data-order"), 10) - parseInt(b.getAttribute("data-order"), 10));
      });
      sorted.forEach(function (row) { body.appendChild(row); });
    }

    table.querySelectorAll("button.sort").forEach(function (button) {
      button.addEventListener("click", function () {
        sortBy(parseInt(button.getAttribute("data-col"), 10), button.parentNode);
      });
    });
    controls.forEach(function (c) {
      c.addEventListener(c.tagName === "SELECT" ? "change" : "input", apply);
    });
    form.addEventListener("submit", function (e) { e.preventDefault(); apply(); });
    form.addEventListener("reset", function () { setTimeout(apply, 0); });
    window.addEventListener("hashchange", function () { fromAddress(); apply(); });
    fromAddress();
    apply();
  }

  document.addEventListener("DOMContentLoaded", function () {
    copyButtons();
    explorer();
  });
})();
