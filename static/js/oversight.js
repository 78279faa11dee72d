// Oversight's own behaviour. No inline scripts anywhere (CSP): pages opt in with data- attributes.
"use strict";

(function () {
  // Live status of the inbox's WebSocket, and a catch-up refresh after every reconnect, so a
  // dropped socket never leaves the page missing an event.
  let opened = 0;
  function indicator() {
    const holder = document.querySelector("[data-live-indicator]");
    return holder ? document.getElementById(holder.dataset.liveIndicator) : null;
  }
  document.body.addEventListener("htmx:wsOpen", function () {
    opened += 1;
    document.body.dataset.live = "open";
    const el = indicator();
    if (el) { el.textContent = "Live."; el.classList.remove("offline"); }
    if (opened > 1) { document.body.dispatchEvent(new Event("oversight:resync")); }
  });
  document.body.addEventListener("htmx:wsClose", function () {
    document.body.dataset.live = "closed";
    const el = indicator();
    if (el) { el.textContent = "Live updates paused; refreshing every 30 s."; el.classList.add("offline"); }
  });
})();

(function () {
  // Live inbox: each pushed message is one request's row (or an empty one: drop it). Replace
  // the row in place, or insert it where its deadline puts it (soonest first), or remove it.
  function place(body, row) {
    const expires = Number(row.dataset.expires);
    const later = Array.from(body.children).find(function (other) {
      return other !== row && Number(other.dataset.expires) > expires;
    });
    body.insertBefore(row, later || null);
  }
  document.body.addEventListener("htmx:wsBeforeMessage", function (event) {
    const message = event.detail.message;
    if (typeof message !== "string" || message.indexOf("data-inbox-row") < 0) { return; }
    event.preventDefault();
    const holder = document.createElement("template");
    holder.innerHTML = message;
    const push = holder.content.querySelector("template[data-inbox-row]");
    const body = document.getElementById("inbox-rows");
    if (!push || !body) { return; }
    const existing = document.getElementById(push.dataset.inboxRow);
    const row = push.content.querySelector("tr");
    if (!row) {
      if (existing) { existing.remove(); }
    } else {
      if (existing) { existing.replaceWith(row); }
      place(body, row);
      htmx.process(row);
    }
    document.body.dispatchEvent(new Event("oversight:rows-changed"));
  });
})();

(function () {
  // Countdowns: <time class="countdown" data-deadline="<epoch seconds>" data-done="expired">.
  // Rows pushed over the socket are picked up on the next tick, since each tick queries anew.
  function format(seconds) {
    if (seconds >= 86400) { return Math.floor(seconds / 86400) + "d " + Math.floor((seconds % 86400) / 3600) + "h"; }
    if (seconds >= 3600) { return Math.floor(seconds / 3600) + "h " + String(Math.floor((seconds % 3600) / 60)).padStart(2, "0") + "m"; }
    if (seconds >= 60) { return Math.floor(seconds / 60) + "m " + String(seconds % 60).padStart(2, "0") + "s"; }
    return seconds + "s";
  }
  function tick() {
    const now = Date.now() / 1000;
    document.querySelectorAll("time.countdown[data-deadline]").forEach(function (el) {
      const left = Math.floor(Number(el.dataset.deadline) - now);
      if (left <= 0) {
        el.textContent = el.dataset.done || "now";
        el.classList.add("is-done");
        el.classList.remove("is-soon");
        const row = el.closest("tr");
        if (row && el.dataset.done === "expired") { row.classList.add("is-expired"); }
      } else {
        el.textContent = format(left);
        el.classList.toggle("is-soon", left < 300);
      }
    });
  }
  tick();
  window.setInterval(tick, 1000);
  // Pushed or refreshed rows show their countdown at once, not the server's rounded text.
  document.body.addEventListener("htmx:afterSettle", tick);
  document.body.addEventListener("oversight:rows-changed", tick);
})();

(function () {
  // Inbox keyboard: j/k move the selection, Enter opens, a/r open the selected request with
  // the approve button / the reject reason focused. Nothing is decided without the request page
  // in front of the person: a key press never approves a row they have not opened.
  const table = document.querySelector("[data-keyboard-rows]");
  if (!table) { return; }
  let selectedId = null;
  let selectedIndex = -1;
  function rows() { return Array.from(table.querySelectorAll("tbody tr[data-href]")); }
  function select(row) {
    rows().forEach(function (r) { r.classList.remove("is-selected"); r.removeAttribute("aria-current"); });
    if (!row) { selectedId = null; return; }
    row.classList.add("is-selected");
    row.setAttribute("aria-current", "true");
    selectedId = row.id;
    selectedIndex = rows().indexOf(row);
    row.focus();
  }
  function selected() { return selectedId ? document.getElementById(selectedId) : null; }
  // A live push replaces the rows: keep the same request selected, or the one now in its place.
  function reselect() {
    if (selectedIndex < 0) { return; }
    const all = rows();
    const row = selected() || all[Math.min(selectedIndex, all.length - 1)] || null;
    if (row) { row.classList.add("is-selected"); row.setAttribute("aria-current", "true"); selectedId = row.id; selectedIndex = all.indexOf(row); }
    else { selectedId = null; selectedIndex = -1; }
  }
  document.body.addEventListener("htmx:afterSettle", reselect);
  document.body.addEventListener("oversight:rows-changed", reselect);
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) { return; }
    const target = event.target;
    // A checkbox keeps the keys (a bulk pick, clicked, must not stop j/k).
    if (target.closest("input:not([type=checkbox]), textarea, select, [contenteditable]")) { return; }
    const all = rows();
    const current = selected();
    const index = current ? all.indexOf(current) : -1;
    if (event.key === "j" || event.key === "k") {
      if (!all.length) { return; }
      const next = event.key === "j" ? Math.min(index + 1, all.length - 1) : Math.max(index - 1, 0);
      select(all[index < 0 ? 0 : next]);
      event.preventDefault();
    } else if (current && (event.key === "Enter" || event.key === "o") && !target.closest("a, button, summary")) {
      window.location.assign(current.dataset.href);
      event.preventDefault();
    } else if (current && (event.key === "a" || event.key === "r")) {
      window.location.assign(current.dataset.href + (event.key === "a" ? "#approve" : "#reject"));
      event.preventDefault();
    }
  });
})();

(function () {
  // Bulk decisions in the inbox (issue 24). Rows are picked with their checkbox, with `x` on the
  // keyboard row, by shift-click for a range, or with "select all"; Shift+A / Shift+R move to the
  // bulk approve button / reject reason (a key press alone never decides anything). The picks
  // survive the live pushes and the refresh, which re-render rows: a row stays picked only while
  // its value (id and arguments hash) is the same, so a row whose arguments changed meanwhile is
  // dropped from the selection. The bar shows while any row is picked (CSS :has, JS or not).
  const form = document.getElementById("bulk-form");
  const table = document.querySelector("[data-keyboard-rows]");
  if (!form || !table) { return; }
  const picked = new Set();
  const count = form.querySelector("[data-bulk-count]");
  const clear = form.querySelector("[data-pick-clear]");
  const reason = document.getElementById("bulk-reason");
  const all = table.querySelector("[data-pick-all]");
  const allLabel = table.querySelector("[data-pick-all-label]");
  let anchor = null; // the last box picked, where a shift-click range starts
  let posting = false;
  if (allLabel) { allLabel.hidden = false; }
  if (clear) { clear.hidden = false; }

  function boxes() { return Array.from(table.querySelectorAll("tbody input[data-pick]")); }
  function set(box, on) { if (on) { picked.add(box.value); } else { picked.delete(box.value); } }
  function sync() {
    const present = new Set();
    const list = boxes();
    list.forEach(function (box) {
      box.checked = picked.has(box.value);
      present.add(box.value);
      box.closest("tr").classList.toggle("is-picked", box.checked);
    });
    picked.forEach(function (value) { if (!present.has(value)) { picked.delete(value); } });
    count.textContent = picked.size + " selected";
    if (all) {
      all.checked = list.length > 0 && picked.size === list.length;
      all.indeterminate = picked.size > 0 && picked.size < list.length;
      all.disabled = list.length === 0;
    }
  }

  table.addEventListener("click", function (event) {
    const box = event.target.closest("input[data-pick]");
    if (!box) { return; }
    const list = boxes();
    if (event.shiftKey && anchor && anchor !== box) {
      const from = list.indexOf(anchor), to = list.indexOf(box);
      if (from >= 0 && to >= 0) {
        list.slice(Math.min(from, to), Math.max(from, to) + 1).forEach(function (other) { set(other, box.checked); });
      }
    }
    set(box, box.checked);
    anchor = box;
    sync();
  });
  if (all) {
    all.addEventListener("change", function () {
      boxes().forEach(function (box) { set(box, all.checked); });
      sync();
    });
  }
  if (clear) { clear.addEventListener("click", function () { picked.clear(); sync(); }); }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) { return; }
    if (event.target.closest("input:not([type=checkbox]), textarea, select, [contenteditable]")) { return; }
    if (event.key === "x") {
      const row = table.querySelector("tbody tr.is-selected");
      const box = row ? row.querySelector("input[data-pick]") : null;
      if (!box) { return; }
      set(box, !picked.has(box.value));
      anchor = box;
      sync();
      event.preventDefault();
    } else if ((event.key === "A" || event.key === "R") && picked.size) {
      (event.key === "A" ? document.getElementById("bulk-approve") : reason).focus();
      event.preventDefault();
    }
  });

  form.addEventListener("htmx:beforeRequest", function () { posting = true; });
  document.body.addEventListener("htmx:afterSettle", function () {
    if (posting) {
      posting = false;
      const panel = document.getElementById("bulk-result");
      if (panel && panel.hasAttribute("data-bulk-done")) {
        picked.clear();
        reason.value = "";
        reason.removeAttribute("aria-invalid");
        panel.focus();
      } else if (panel && panel.querySelector("[data-error-field=reason]")) {
        reason.setAttribute("aria-invalid", "true");
        reason.focus();
      } else if (panel) {
        panel.focus();
      }
    }
    sync();
  });
  document.body.addEventListener("oversight:rows-changed", sync);
  // Boxes the browser restored (back button) count as picked.
  boxes().forEach(function (box) { if (box.checked) { picked.add(box.value); } });
  sync();
})();

(function () {
  // Request page: #approve / #reject (from the inbox keys) focus that decision; a form returned
  // with an error focuses its first invalid field. (No element has those ids on purpose: the
  // browser would move focus to a fragment's target after this runs.)
  const invalid = document.querySelector("[aria-invalid=true]");
  if (invalid) { invalid.focus(); return; }
  if (window.location.hash === "#approve") {
    const button = document.getElementById("approve-button");
    if (button) { button.focus(); }
  } else if (window.location.hash === "#reject") {
    const reason = document.querySelector("#reject-form textarea");
    if (reason) { reason.focus(); }
  }
})();

(function () {
  // Approve with changes: validate the edited JSON as the person types and show a line diff
  // against the original. Both sides are normalised the same way (sorted keys, 2-space
  // indent), so only real changes show. The server validates again; this is a preview.
  const editor = document.querySelector("textarea[data-original]");
  if (!editor) { return; }
  const output = document.getElementById("params-diff");
  const status = document.getElementById("params-status");
  const button = document.getElementById("approve-button");
  const original = normalise(JSON.parse(editor.dataset.original));

  function sortKeys(value) {
    if (Array.isArray(value)) { return value.map(sortKeys); }
    if (value && typeof value === "object") {
      const sorted = {};
      Object.keys(value).sort().forEach(function (key) { sorted[key] = sortKeys(value[key]); });
      return sorted;
    }
    return value;
  }
  function normalise(value) { return JSON.stringify(sortKeys(value), null, 2).split("\n"); }

  // Longest common subsequence of lines, then walk it: "-" removed, "+" added, " " kept.
  function diff(a, b) {
    const n = a.length, m = b.length;
    if (n * m > 4000000) { return null; }
    const lcs = Array.from({ length: n + 1 }, function () { return new Uint32Array(m + 1); });
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
      }
    }
    const out = [];
    let i = 0, j = 0;
    while (i < n && j < m) {
      if (a[i] === b[j]) { out.push([" ", a[i]]); i++; j++; }
      else if (lcs[i + 1][j] >= lcs[i][j + 1]) { out.push(["-", a[i]]); i++; }
      else { out.push(["+", b[j]]); j++; }
    }
    while (i < n) { out.push(["-", a[i++]]); }
    while (j < m) { out.push(["+", b[j++]]); }
    return out;
  }

  function show(message, kind) {
    status.textContent = message;
    status.className = "json-status " + kind;
  }
  function update() {
    output.replaceChildren();
    const raw = editor.value.trim();
    let edited;
    if (raw === "") {
      show("Empty: the agent's original arguments will be approved.", "ok");
      button.textContent = "Approve"; button.disabled = false;
      output.hidden = true;
      return;
    }
    try { edited = JSON.parse(raw); } catch (error) {
      show("Not valid JSON yet: " + error.message, "error");
      button.disabled = true;
      output.hidden = true;
      return;
    }
    if (!edited || typeof edited !== "object" || Array.isArray(edited)) {
      show("The arguments must be a JSON object, like the original.", "error");
      button.disabled = true;
      output.hidden = true;
      return;
    }
    button.disabled = false;
    const lines = diff(original, normalise(edited));
    const changed = lines === null || lines.some(function (line) { return line[0] !== " "; });
    button.textContent = changed ? "Approve with changes" : "Approve";
    if (!changed) {
      show("Unchanged: you approve the arguments the agent sent.", "ok");
      output.hidden = true;
      return;
    }
    if (lines === null) {
      show("Changed (too large to show a line diff). The agent must use your arguments.", "warn");
      output.hidden = true;
      return;
    }
    const added = lines.filter(function (l) { return l[0] === "+"; }).length;
    const removed = lines.filter(function (l) { return l[0] === "-"; }).length;
    show("Changed: " + added + " line" + (added === 1 ? "" : "s") + " added, " + removed + " removed. The agent must use your arguments.", "warn");
    lines.forEach(function (line) {
      const span = document.createElement("span");
      span.className = line[0] === "+" ? "add" : line[0] === "-" ? "del" : "same";
      span.textContent = line[0] + " " + line[1] + "\n";
      output.appendChild(span);
    });
    output.hidden = false;
  }
  editor.addEventListener("input", update);
  update();
})();

(function () {
  // A new API key: select it on focus, copy it with the button.
  document.querySelectorAll("[data-select-on-focus]").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      const source = document.getElementById(button.dataset.copy);
      if (!source || !navigator.clipboard) { source.select(); return; }
      navigator.clipboard.writeText(source.value).then(function () { button.textContent = "Copied"; }, function () { source.select(); });
    });
  });
})();
