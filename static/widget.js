// Baton web chat widget. Embed with <script src="https://YOUR-BATON/static/widget.js" defer></script>.
// No dependencies; talks to the Baton that served this file. The conversation survives page
// reloads (its id and token are kept in localStorage) and the live stream replays anything
// missed while disconnected.
(function () {
  "use strict";
  var script = document.currentScript;
  var base = (script && script.src) ? new URL(script.src).origin : window.location.origin;
  var KEY = "baton.webchat." + base;
  var state = null;
  var seen = {};
  var source = null;
  var lastId = null;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text; // never innerHTML: messages are untrusted
    return e;
  }

  var launcher = el("button", "baton-launcher", "Chat with us");
  launcher.type = "button";
  launcher.setAttribute("aria-controls", "baton-panel");
  var panel = el("section", "baton-panel");
  panel.id = "baton-panel";
  panel.hidden = true;
  panel.setAttribute("aria-label", "Support chat");
  var head = el("div", "baton-head", "Support");
  var log = el("div", "baton-log");
  log.setAttribute("role", "log");
  log.setAttribute("aria-live", "polite");
  var status = el("div", "baton-status", "");
  var form = el("form", "baton-form");
  var input = el("input");
  input.name = "text";
  input.placeholder = "Type your message…";
  input.autocomplete = "off";
  input.setAttribute("aria-label", "Message");
  var send = el("button", null, "Send");
  send.type = "submit";
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(head);
  panel.appendChild(log);
  panel.appendChild(status);
  panel.appendChild(form);

  function who(m) {
    if (m.direction === "in") return "You";
    if (m.author_kind === "agent") return "Agent";
    if (m.author_kind === "bot") return "Bot";
    return "";
  }

  function show(m) {
    if (seen[m.id]) return;
    seen[m.id] = true;
    lastId = m.id;
    var cls = "baton-msg " + (m.author_kind === "system" ? "system" : m.direction);
    var bubble = el("div", cls);
    var label = who(m);
    if (label) bubble.appendChild(el("span", "who", label));
    bubble.appendChild(document.createTextNode(m.text));
    bubble.setAttribute("data-author", m.author_kind);
    log.appendChild(bubble);
    log.scrollTop = log.scrollHeight;
  }

  function api(method, path, body) {
    var headers = { "Content-Type": "application/json" };
    if (state) headers["Authorization"] = "Bearer " + state.token;
    return fetch(base + path, { method: method, headers: headers, body: body ? JSON.stringify(body) : undefined })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      });
  }

  function ensureConversation() {
    if (state) return Promise.resolve(state);
    try { state = JSON.parse(localStorage.getItem(KEY) || "null"); } catch (e) { state = null; }
    if (state) return Promise.resolve(state);
    return api("POST", "/widget/v1/conversations", {}).then(function (r) {
      state = { id: r.conversation_id, token: r.token };
      try { localStorage.setItem(KEY, JSON.stringify(state)); } catch (e) { /* private mode */ }
      return state;
    });
  }

  function connect() {
    if (source) source.close();
    var url = base + "/widget/v1/conversations/" + encodeURIComponent(state.id) + "/events?token=" +
      encodeURIComponent(state.token) + (lastId ? "&after=" + encodeURIComponent(lastId) : "");
    source = new EventSource(url);
    source.addEventListener("message", function (ev) {
      try { show(JSON.parse(ev.data)); } catch (e) { /* ignore malformed */ }
    });
    source.onopen = function () { status.textContent = ""; };
    source.onerror = function () { status.textContent = "Reconnecting…"; };
  }

  function open() {
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    ensureConversation().then(connect).catch(function () {
      // A stored conversation may be gone (new server): start afresh once.
      try { localStorage.removeItem(KEY); } catch (e) { /* ignore */ }
      state = null;
      status.textContent = "Chat is unavailable right now.";
    });
    input.focus();
  }

  launcher.addEventListener("click", function () {
    if (panel.hidden) open(); else { panel.hidden = true; launcher.setAttribute("aria-expanded", "false"); }
  });

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    if (!text) return;
    var clientId = Date.now().toString(36) + Math.random().toString(36).slice(2);
    input.value = "";
    // Shown at once, so a fast bot reply arriving on the stream lands below it.
    var bubble = el("div", "baton-msg in");
    bubble.appendChild(el("span", "who", "You"));
    bubble.appendChild(document.createTextNode(text));
    bubble.setAttribute("data-author", "customer");
    log.appendChild(bubble);
    log.scrollTop = log.scrollHeight;
    ensureConversation().then(function () {
      return api("POST", "/widget/v1/conversations/" + encodeURIComponent(state.id) + "/messages",
        { text: text, client_message_id: clientId });
    }).then(function (r) {
      seen[r.message_id] = true; // the stream's replay of it is already on screen
      status.textContent = "";
    }).catch(function () {
      bubble.remove();
      status.textContent = "Your message could not be sent. Please try again.";
      input.value = text;
    });
  });

  function mount() {
    document.body.appendChild(panel);
    document.body.appendChild(launcher);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount); else mount();
})();
