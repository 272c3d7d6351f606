// The explorer's scripts: live refresh over Server-Sent Events, time travel, sorting,
// keyboard moves through the list, and the actions (each sent with the header the server
// requires of them). No framework, no build step.
"use strict";

const ACTION_HEADER = { "x-alphasaga-explorer": "1" };
// What the live list has done, for the browser tests to read: each lifecycle event with
// when it arrived and when the page showed it (milliseconds since the epoch).
window.explorerLive = { arrivals: [], updates: [], refreshes: 0, connected: false };

async function act(method, url, body) {
  const headers = { ...ACTION_HEADER };
  if (body !== undefined) headers["content-type"] = "application/json";
  const r = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let json = null;
  try { json = await r.json(); } catch (e) { json = null; }
  return { ok: r.ok, status: r.status, json };
}

function problemText(res) {
  return (res.json && (res.json.detail || res.json.title)) || `failed (${res.status})`;
}

function signOut() {
  const button = document.getElementById("sign-out");
  if (!button) return;
  button.addEventListener("click", async () => {
    await act("POST", "/explorer/logout");
    location.href = "/explorer/login";
  });
}

// --- the saga list ---

// The state each lifecycle event puts a saga in (contracts/…/states.py).
const STATE_OF = {
  "sagas.SagaStarted": "RUNNING",
  "sagas.SagaCompensating": "COMPENSATING",
  "sagas.SagaCompleted": "COMPLETED",
  "sagas.SagaRolledBack": "ROLLED_BACK",
  "sagas.SagaCompensationFailed": "COMPENSATION_FAILED",
};

function showState(tr, state) {
  const badge = tr.querySelector(".state");
  if (tr.dataset.state === state || !badge) return;
  tr.dataset.state = state;
  badge.textContent = state;
  badge.className = `state state-${state.toLowerCase()}`;
  tr.classList.remove("flash");
  void tr.offsetWidth; // restart the highlight
  tr.classList.add("flash");
}

function listPage() {
  const holder = document.querySelector("[data-live-list]");
  if (!holder) return;
  let sortKey = null, sortDir = 1, inFlight = false, again = false, pending = [];
  const patched = new Map(); // saga id -> the state an event showed, and when
  const status = document.getElementById("live-status");

  function applySort() {
    if (!sortKey) return;
    const body = holder.querySelector("tbody");
    const rows = [...body.querySelectorAll("tr[data-saga]")];
    const key = (tr) => sortKey === "sharpe" ? parseFloat(tr.dataset.sharpe || "NaN") : (tr.dataset[sortKey] || tr.dataset.saga);
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      if (typeof x === "number" || typeof y === "number") {
        const xa = isNaN(x) ? -Infinity : x, ya = isNaN(y) ? -Infinity : y;
        return (xa - ya) * sortDir;
      }
      return String(x).localeCompare(String(y)) * sortDir;
    });
    rows.forEach((tr) => body.appendChild(tr));
    holder.querySelectorAll("button.sort").forEach((b) => {
      const th = b.closest("th");
      if (b.dataset.key === sortKey) th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      else th.removeAttribute("aria-sort");
    });
  }

  holder.addEventListener("click", (ev) => {
    const b = ev.target.closest("button.sort");
    if (!b) return;
    sortDir = sortKey === b.dataset.key ? -sortDir : 1;
    sortKey = b.dataset.key === "id" ? "saga" : b.dataset.key;
    applySort();
  });

  // Arrow keys move between the rows' saga links (a campaign's row has a second); Enter opens one.
  holder.addEventListener("keydown", (ev) => {
    if (ev.key !== "ArrowDown" && ev.key !== "ArrowUp") return;
    const links = [...holder.querySelectorAll("tbody tr[data-saga] td:first-child a")];
    const at = links.indexOf(document.activeElement);
    if (at < 0) return;
    const next = links[Math.min(Math.max(at + (ev.key === "ArrowDown" ? 1 : -1), 0), links.length - 1)];
    next.focus();
    ev.preventDefault();
  });

  async function refresh() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    const taken = pending; pending = [];
    const begun = Date.now();
    try {
      const before = new Map([...holder.querySelectorAll("tr[data-saga]")].map((tr) => [tr.dataset.saga, tr.dataset.state]));
      const focusedSaga = document.activeElement && document.activeElement.closest("tr[data-saga]")?.dataset.saga;
      const r = await fetch("/explorer/rows?" + new URLSearchParams(location.search).toString());
      if (!r.ok) { status.textContent = `refresh failed (${r.status})`; return; }
      holder.innerHTML = await r.text();
      // A state shown from an event that came after this fetch began is newer than the rows.
      for (const [saga, p] of patched) {
        const tr = holder.querySelector(`tr[data-saga="${saga}"]`);
        if (p.at > begun && tr) showState(tr, p.state);
        else patched.delete(saga);
      }
      applySort();
      holder.querySelectorAll("tr[data-saga]").forEach((tr) => {
        if (before.get(tr.dataset.saga) !== tr.dataset.state) tr.classList.add("flash");
      });
      if (focusedSaga) holder.querySelector(`tr[data-saga="${focusedSaga}"] a`)?.focus();
      const shown = Date.now();
      window.explorerLive.refreshes += 1;
      taken.forEach((a) => {
        const tr = holder.querySelector(`tr[data-saga="${a.saga_id}"]`);
        window.explorerLive.updates.push({ ...a, shown, state: tr ? tr.dataset.state : null });
      });
    } finally {
      inFlight = false;
      if (again) { again = false; refresh(); }
    }
  }

  const source = new EventSource("/explorer/live");
  source.addEventListener("open", () => { window.explorerLive.connected = true; status.textContent = "Live"; });
  source.addEventListener("error", () => { status.textContent = "Reconnecting…"; });
  source.addEventListener("saga", (ev) => {
    const data = JSON.parse(ev.data);
    const arrival = { saga_id: data.saga_id, type: data.type, received: Date.now() };
    window.explorerLive.arrivals.push(arrival);
    // A state the event names is shown at once; the refresh then brings the rest (the
    // step, the verdict, new rows, the counts) as the read model has it.
    const tr = holder.querySelector(`tr[data-saga="${data.saga_id}"]`);
    if (tr && STATE_OF[data.type]) {
      showState(tr, STATE_OF[data.type]);
      patched.set(data.saga_id, { state: STATE_OF[data.type], at: Date.now() });
      window.explorerLive.updates.push({ ...arrival, shown: Date.now(), state: tr.dataset.state });
    } else {
      pending.push(arrival);
    }
    refresh();
  });

  const form = document.getElementById("submit-form");
  if (form) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = document.getElementById("submit-result");
      const data = Object.fromEntries([...new FormData(form)].filter(([, v]) => v !== ""));
      out.textContent = "Submitting…";
      const res = await act("POST", "/explorer/research", data);
      if (res.ok) {
        out.innerHTML = "";
        const a = document.createElement("a");
        a.href = res.json.href; a.textContent = `Submitted ${res.json.saga_id}`; a.id = "submitted";
        a.dataset.saga = res.json.saga_id;
        out.appendChild(a);
      } else {
        out.textContent = problemText(res);
      }
    });
  }
}

// --- a saga ---

function sagaPage() {
  const root = document.getElementById("saga");
  if (!root) return;
  const sagaId = root.dataset.saga;
  const slider = document.getElementById("version");
  let timer = null;

  async function showVersion(version, { push = true } = {}) {
    if (!slider) return;
    version = Math.min(Math.max(version, 1), Number(slider.max));
    slider.value = String(version);
    slider.setAttribute("aria-valuetext", `event ${version} of ${slider.max}`);
    document.getElementById("version-label").textContent = `${version} / ${slider.max}`;
    document.querySelectorAll("#events li").forEach((li) => {
      if (Number(li.dataset.version) === version) li.setAttribute("aria-current", "step");
      else li.removeAttribute("aria-current");
    });
    const r = await fetch(`/explorer/sagas/${sagaId}/state?version=${version}`);
    if (!r.ok) return;
    if (Number(slider.value) !== version) return; // a newer choice came meanwhile
    document.getElementById("state").innerHTML = await r.text();
    if (push) {
      const url = new URL(location.href);
      url.searchParams.set("version", String(version));
      history.replaceState(null, "", url);
    }
  }

  if (slider) {
    slider.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => showVersion(Number(slider.value)), 120);
    });
    document.getElementById("prev").addEventListener("click", () => showVersion(Number(slider.value) - 1));
    document.getElementById("next").addEventListener("click", () => showVersion(Number(slider.value) + 1));
    document.getElementById("events").addEventListener("click", (ev) => {
      const li = ev.target.closest("li[data-version]");
      if (!li) return;
      ev.preventDefault();
      showVersion(Number(li.dataset.version));
    });
  }

  // Delegated: the live refresh replaces the button with a fresh one.
  let armed = false;
  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest("#cancel");
    if (!button) return;
    const out = document.getElementById("action-result");
    if (!armed) {
      armed = true;
      const what = root.dataset.page ? "campaign" : "saga";
      button.textContent = `Confirm: cancel this ${what}`;
      out.textContent = `Press again to cancel the ${what}.`;
      return;
    }
    armed = false;
    const res = await act("POST", `/explorer/sagas/${sagaId}/cancel`);
    out.textContent = res.ok ? "Cancel sent." : problemText(res);
  });

  document.getElementById("fork-form")?.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget, out = document.getElementById("action-result");
    const data = new FormData(form), set = {};
    const path = String(data.get("path") || "").trim();
    if (path) {
      const raw = String(data.get("value") || "");
      try { set[path] = JSON.parse(raw); } catch (e) { set[path] = raw; } // a number, true, or text
    }
    const res = await act("POST", `/explorer/sagas/${sagaId}/fork`, { from_step: data.get("from_step"), set });
    if (!res.ok) { out.textContent = problemText(res); return; }
    out.innerHTML = "";
    const a = document.createElement("a");
    a.href = res.json.href; a.id = "forked"; a.textContent = `Forked as ${res.json.saga_id}`;
    out.appendChild(a);
  });

  // Live: on each of this saga's lifecycle events, the page's live parts are fetched again.
  if (root.dataset.terminal === "yes") return;
  let busy = false, dirty = false;
  async function reload() {
    if (busy) { dirty = true; return; }
    busy = true;
    try {
      const r = await fetch(root.dataset.page || `/explorer/sagas/${sagaId}`);
      if (!r.ok) return;
      const fresh = new DOMParser().parseFromString(await r.text(), "text/html");
      for (const id of ["head", "timeline", "artifacts", "events", "progress", "ranking"]) {
        const now = document.getElementById(id), then = fresh.getElementById(id);
        if (now && then) now.replaceWith(then);
      }
      const freshSlider = fresh.getElementById("version");
      const freshRoot = fresh.getElementById("saga");
      if (!slider && freshSlider) { location.reload(); return; }
      if (slider && freshSlider) {
        const following = Number(slider.value) === Number(slider.max);
        slider.max = freshSlider.max;
        if (following) await showVersion(Number(slider.max), { push: false });
        else showVersion(Number(slider.value), { push: false });
      }
      if (freshRoot && freshRoot.dataset.terminal === "yes") {
        root.dataset.terminal = "yes";
        source.close();
        dirty = false;
      }
    } finally {
      busy = false;
      if (dirty) { dirty = false; reload(); }
      else if (root.dataset.terminal === "yes") root.dataset.settled = "yes"; // nothing more will change
    }
  }
  // A campaign's page follows its children's events too (their ids are derived from its own).
  const followed = new Set([sagaId, ...(root.dataset.children || "").split(" ").filter(Boolean)]);
  const source = new EventSource("/explorer/live");
  source.addEventListener("open", () => reload());
  source.addEventListener("saga", (ev) => {
    if (followed.has(JSON.parse(ev.data).saga_id)) reload();
  });
}

// --- dead letters ---

function deadLetters() {
  document.querySelectorAll("tr[data-entry]").forEach((tr) => {
    const confirm = tr.querySelector(".confirm");
    const out = tr.querySelector("output");
    let chosen = null;
    tr.querySelectorAll("button[data-action]").forEach((b) => b.addEventListener("click", () => {
      chosen = b.dataset.action;
      confirm.querySelector(".question").textContent = chosen === "redrive"
        ? `Send it back to ${tr.dataset.stream}?` : "Delete it for good?";
      confirm.hidden = false;
      confirm.querySelector("[data-confirm]").focus();
    }));
    confirm.querySelector("[data-dismiss]").addEventListener("click", () => { confirm.hidden = true; chosen = null; });
    confirm.querySelector("[data-confirm]").addEventListener("click", async () => {
      const url = `/explorer/dead-letters/${encodeURIComponent(tr.dataset.entry)}`;
      const res = chosen === "redrive" ? await act("POST", url + "/redrive") : await act("DELETE", url);
      confirm.hidden = true;
      if (res.ok) {
        tr.querySelectorAll("button[data-action]").forEach((b) => b.remove());
        out.textContent = chosen === "redrive" ? `Redriven as ${res.json.entry_id}` : "Purged";
        tr.dataset.done = chosen;
      } else {
        out.textContent = problemText(res);
      }
    });
  });
}

document.addEventListener("DOMContentLoaded", () => { signOut(); listPage(); sagaPage(); deadLetters(); });
