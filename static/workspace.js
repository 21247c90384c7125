// Baton agent workspace: the CSRF header on htmx requests, offer countdowns, the reply's
// character count, and keyboard shortcuts. Everything works without it (plain forms).
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="csrf-token"]');
  document.addEventListener("htmx:configRequest", function (e) {
    if (meta) e.detail.headers["X-CSRF-Token"] = meta.content;
  });

  function countdowns() {
    var now = Date.now();
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var left = Math.max(0, Math.round((Number(el.getAttribute("data-deadline")) - now) / 1000));
      el.textContent = left + " s";
    });
  }
  setInterval(countdowns, 1000);

  function count() {
    var box = document.getElementById("reply-text");
    var out = document.querySelector("[data-counter]");
    if (box && out) out.textContent = String(box.value.length);
  }
  document.addEventListener("input", function (e) {
    if (e.target && e.target.id === "reply-text") count();
  });
  document.addEventListener("htmx:afterSwap", count);

  var selected = -1;
  function rows() { return Array.prototype.slice.call(document.querySelectorAll("tr[data-ticket]")); }
  function move(by) {
    var r = rows();
    if (!r.length) return;
    if (selected >= 0 && r[selected]) r[selected].classList.remove("selected");
    selected = Math.max(0, Math.min(r.length - 1, selected + by));
    r[selected].classList.add("selected");
    r[selected].scrollIntoView({ block: "nearest" });
  }
  function openSelected() {
    var r = rows()[selected];
    var link = r && r.querySelector("a");
    if (link) link.click();
  }

  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (t && t.matches && t.matches("textarea, input, select")) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && t.form) {
        e.preventDefault();
        t.form.requestSubmit();
      } else if (e.key === "Escape") {
        t.blur();
      }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    function click(sel) { var b = document.querySelector(sel); if (b) { e.preventDefault(); b.click(); } }
    function focus(sel) { var b = document.querySelector(sel); if (b) { e.preventDefault(); b.focus(); } }
    switch (e.key) {
      case "a": click("[data-key=accept]"); break;
      case "d": click("[data-key=decline]"); break;
      case "e": click("[data-key=resolve]"); break;
      case "r": focus("#reply-text"); break;
      case "n": focus("#note-text"); break;
      case "j": e.preventDefault(); move(1); break;
      case "k": e.preventDefault(); move(-1); break;
      case "Enter": if (selected >= 0) { e.preventDefault(); openSelected(); } break;
      case "g": e.preventDefault(); window.location.href = "/workspace"; break;
      case "?": var h = document.getElementById("shortcuts"); if (h) h.hidden = !h.hidden; break;
    }
  });
})();
