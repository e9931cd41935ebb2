// The opendts dashboard: plain JavaScript, no dependencies, no build step.
// POST /ui/session trades the API key for a server-side session whose id lives in an HttpOnly
// cookie: this script never sees it, and the key is never kept in the browser.
// Every server string goes into the DOM as text (el() / textContent), never as HTML.
"use strict";

const INCOMPLETE = ["CREATED", "SCHEDULED", "RUNNING", "FAILED"];
const ENDED = ["COMPLETED", "FAILED", "CANCELLED"];
const STATUSES = ["CREATED", "SCHEDULED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"];
const FIELD_OF_CODE = {
  INVALID_DATE_RANGE: "range_end",
  RANGE_END_IN_FUTURE: "range_end",
  RANGE_TOO_LONG: "range_end",
  TRANSFER_NOT_FOUND: "transfer",
  TRANSFER_PAUSED: "transfer",
  TRANSFER_DELETED: "transfer",
  BACKFILL_OVERLAP: "transfer",
};

const state = {
  teams: [],
  team: null,
  transfers: new Map(), // dwh_transfer_id -> display_name
  streams: new Map(), // backfill id -> EventSource
  filters: { status: "all", transfer: "" },
  view: 0, // bumped on every navigation: late answers for an old view are dropped
};

// --- DOM helpers -----------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child)); // strings become text nodes
  }
  return node;
}

function show(...nodes) {
  document.getElementById("view").replaceChildren(...nodes);
}

function badge(status) {
  return el("span", { class: `badge badge-${status.toLowerCase()}`, "data-status": status }, status);
}

function progress(b) {
  const total = b.transfer_runs_total || 0;
  const done = b.transfer_runs_completed + b.transfer_runs_failed;
  const pct = (n) => (total ? `${(100 * n) / total}%` : "0%");
  const bar = el(
    "div",
    {
      class: "progress",
      role: "progressbar",
      "aria-valuemin": 0,
      "aria-valuemax": total,
      "aria-valuenow": done,
      "aria-label": `${done} of ${total} dates done`,
    },
    el("div", { class: "bar bar-ok" }),
    el("div", { class: "bar bar-failed" }),
  );
  bar.children[0].style.width = pct(b.transfer_runs_completed);
  bar.children[1].style.width = pct(b.transfer_runs_failed);
  const failed = b.transfer_runs_failed ? `, ${b.transfer_runs_failed} failed` : "";
  return el("div", { class: "progress-wrap" }, bar, el("span", { class: "progress-text" }, `${done}/${total}${failed}`));
}

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

function transferName(id) {
  return state.transfers.get(id) || `Transfer ${id}`;
}

// --- API -------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, error) {
    super(error.description || error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "";
  }
}

async function api(method, path, body) {
  const options = {
    method,
    credentials: "same-origin",
    headers: { "X-Opendts-UI": "1", Accept: "application/json" },
  };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    throw new ApiError(0, { code: "NETWORK", description: "The server cannot be reached." });
  }
  if (response.status === 204) return null;
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new ApiError(response.status, (payload && payload.error) || {});
    if (response.status === 401 && !path.startsWith("/ui/session") && state.teams.length) {
      signedOut(error.message);
    }
    throw error;
  }
  return payload;
}

const teamPath = (rest) => `/v1/teams/${state.team.team_id}${rest}`;

function errorBox(error) {
  return el("p", { class: "error", role: "alert" }, error.message);
}

// --- Live updates (one EventSource per incomplete backfill on screen) ------------------------

function watch(id, onUpdate) {
  if (state.streams.has(id)) return;
  const source = new EventSource(teamPath(`/backfills/${id}/events`));
  const handle = (event) => {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    onUpdate(data, event.type === "end");
  };
  source.addEventListener("backfill", handle);
  source.addEventListener("end", (event) => {
    source.close();
    state.streams.delete(id);
    handle(event);
  });
  source.onerror = () => {
    // The browser reconnects by itself after a dropped connection; a refused stream is CLOSED.
    if (source.readyState === EventSource.CLOSED) state.streams.delete(id);
  };
  state.streams.set(id, source);
}

function closeStreams() {
  for (const source of state.streams.values()) source.close();
  state.streams.clear();
}

// --- Session ---------------------------------------------------------------------------------

function signedOut(message) {
  state.teams = [];
  state.team = null;
  route(message);
}

function showSignIn(message) {
  document.getElementById("nav").hidden = true;
  const input = el("input", {
    id: "api_key",
    name: "api_key",
    type: "password",
    autocomplete: "current-password",
    placeholder: "odts_…",
    required: true,
  });
  const error = el("p", { id: "sign-in-error", class: "field-error", role: "alert" }, message || "");
  const form = el(
    "form",
    { class: "card narrow", id: "sign-in", novalidate: true },
    el("h1", {}, "Sign in"),
    el("label", { for: "api_key" }, "API key"),
    input,
    error,
    el("button", { type: "submit" }, "Sign in"),
    el(
      "p",
      { class: "muted" },
      "Signing in starts a session that signing out ends; the key itself is not kept in this browser.",
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      const data = await api("POST", "/ui/session", { api_key: input.value });
      signedIn(data.teams);
    } catch (e) {
      error.textContent = e.message;
    }
  });
  show(form);
  input.focus();
}

function signedIn(teams) {
  if (!teams.length) {
    // The key lost its last team since it signed in: forget it and say why.
    api("DELETE", "/ui/session").catch(() => null);
    return signedOut("This key's user is not a member of any team. Ask a team admin to add you to a team.");
  }
  state.teams = teams;
  state.filters = { status: "all", transfer: "" }; // another key: start from the whole list
  const saved = Number(localStorage.getItem("opendts.team"));
  state.team = teams.find((t) => t.team_id === saved) || (teams.length === 1 ? teams[0] : null);
  state.transfers.clear();
  route();
}

function pickTeam(team) {
  // Transfer ids belong to one team: another team's list must not be filtered by them.
  if (!state.team || state.team.team_id !== team.team_id) state.filters.transfer = "";
  state.team = team;
  state.transfers.clear();
  localStorage.setItem("opendts.team", String(team.team_id));
  if (location.hash === "#/backfills") route();
  else location.hash = "#/backfills";
}

function showTeams() {
  const list = el("ul", { class: "team-list" });
  for (const team of state.teams) {
    list.append(
      el(
        "li",
        {},
        el(
          "button",
          { type: "button", class: "team-button", onclick: () => pickTeam(team) },
          el("strong", {}, team.name || `Team ${team.team_id}`),
          el("span", { class: "muted" }, ` #${team.team_id} · ${team.role}`),
        ),
      ),
    );
  }
  show(el("section", { class: "card narrow" }, el("h1", {}, "Choose a team"), list));
}

// --- Backfills list --------------------------------------------------------------------------

async function loadTransfers() {
  if (state.transfers.size) return;
  const payload = await api("GET", teamPath("/transfers"));
  for (const t of payload.data) state.transfers.set(t.dwh_transfer_id, t.display_name);
}

function options(pairs, selected) {
  return pairs.map(([value, label]) =>
    el("option", { value, selected: String(value) === String(selected) }, label),
  );
}

function createForm(onCreated) {
  const transfers = [...state.transfers].map(([id, name]) => [id, `${name} (#${id})`]);
  const field = (id, label, input) =>
    el(
      "div",
      { class: "field" },
      el("label", { for: id }, label),
      input,
      el("p", { id: `${id}-error`, class: "field-error", role: "alert" }),
    );
  const form = el(
    "form",
    { id: "create-form", class: "card create", novalidate: true },
    el("h2", {}, "New backfill"),
    el(
      "div",
      { class: "fields" },
      field("transfer", "Transfer", el("select", { id: "transfer", name: "transfer" }, options(transfers))),
      field("range_start", "Start date", el("input", { id: "range_start", type: "date" })),
      field("range_end", "End date", el("input", { id: "range_end", type: "date" })),
      el("div", { class: "field submit" }, el("button", { type: "submit" }, "Create backfill")),
    ),
    el("p", { id: "create-error", class: "field-error", role: "alert" }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const node of form.querySelectorAll(".field-error")) node.textContent = "";
    const value = (id) => form.querySelector(`#${id}`).value;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const payload = await api("POST", teamPath(`/transfers/${value("transfer")}/backfills`), {
        range_start: value("range_start"),
        range_end: value("range_end"),
      });
      onCreated(payload.data);
    } catch (e) {
      const target = document.getElementById(`${errorField(e)}-error`) || form.querySelector("#create-error");
      target.textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function errorField(error) {
  if (FIELD_OF_CODE[error.code]) return FIELD_OF_CODE[error.code];
  const match = /range_start|range_end|transfer/.exec(error.message);
  return match ? match[0] : "create";
}

function backfillRow(b) {
  const link = el("a", { href: `#/backfills/${b.transfer_backfill_id}` }, `#${b.transfer_backfill_id}`);
  return el(
    "tr",
    { "data-id": b.transfer_backfill_id, "data-status": b.status },
    el("td", { "data-label": "Backfill" }, link),
    el("td", { "data-label": "Transfer" }, transferName(b.transfer_id)),
    el("td", { "data-label": "Dates" }, `${b.range_start_date} → ${b.range_end_date}`),
    el("td", { "data-label": "Status" }, badge(b.status)),
    el("td", { "data-label": "Progress", class: "progress-cell" }, progress(b)),
    el("td", { "data-label": "Created" }, when(b.created_time)),
  );
}

function listQuery() {
  const params = new URLSearchParams({ status: state.filters.status, limit: "200" });
  if (state.filters.transfer) params.set("transfer_id", state.filters.transfer);
  return `/backfills?${params}`;
}

async function showBackfills() {
  const view = state.view;
  try {
    await loadTransfers();
  } catch (e) {
    show(errorBox(e));
    return;
  }
  if (view !== state.view) return;
  const tbody = el("tbody");
  const message = el("p", { class: "muted", id: "list-message" }, "Loading…");
  const follow = (b) => {
    if (ENDED.includes(b.status)) return;
    watch(b.transfer_backfill_id, (fresh) => {
      const row = tbody.querySelector(`tr[data-id="${fresh.transfer_backfill_id}"]`);
      if (row) row.replaceWith(backfillRow(fresh));
    });
  };
  const table = el("table", { class: "backfills", id: "backfills", "aria-busy": "true" });
  let loads = 0; // only the newest answer is shown when filters change quickly
  const load = async () => {
    closeStreams();
    const mine = ++loads;
    table.setAttribute("aria-busy", "true");
    try {
      const payload = await api("GET", teamPath(listQuery()));
      if (view !== state.view || mine !== loads) return;
      table.setAttribute("aria-busy", "false");
      tbody.replaceChildren(...payload.data.map(backfillRow));
      message.textContent = payload.data.length ? "" : "No backfills match these filters.";
      payload.data.forEach(follow);
    } catch (e) {
      if (mine === loads) message.textContent = e.message;
    }
  };
  const statusFilter = el(
    "select",
    { id: "filter-status" },
    options(
      [["all", "All statuses"], [INCOMPLETE.join(","), "Incomplete"], ...STATUSES.map((s) => [s, s])],
      state.filters.status,
    ),
  );
  const transferFilter = el(
    "select",
    { id: "filter-transfer" },
    options([["", "All transfers"], ...state.transfers], state.filters.transfer),
  );
  statusFilter.addEventListener("change", () => {
    state.filters.status = statusFilter.value;
    load();
  });
  transferFilter.addEventListener("change", () => {
    state.filters.transfer = transferFilter.value;
    load();
  });
  const created = (b) => {
    tbody.querySelector("tr[data-id]") || (message.textContent = "");
    tbody.prepend(backfillRow(b));
    follow(b);
  };
  show(
    createForm(created),
    el(
      "section",
      { class: "card" },
      el(
        "div",
        { class: "list-head" },
        el("h1", {}, "Backfills"),
        el(
          "div",
          { class: "filters" },
          el("label", {}, "Status ", statusFilter),
          el("label", {}, "Transfer ", transferFilter),
        ),
      ),
      table,
      message,
    ),
  );
  const headings = ["Backfill", "Transfer", "Dates", "Status", "Progress", "Created"];
  table.append(el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))), tbody);
  await load();
}

// --- One backfill ----------------------------------------------------------------------------

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function calendar(b, runs) {
  // One cell per date, Monday-first weeks as rows; a date's newest run decides its colour.
  const byDate = new Map();
  for (const run of runs) {
    const seen = byDate.get(run.data_date);
    if (!seen || run.id > seen.id) byDate.set(run.data_date, run);
  }
  const start = new Date(`${b.range_start_date}T00:00:00Z`);
  const end = new Date(`${b.range_end_date}T00:00:00Z`);
  const grid = el("div", { class: "calendar", id: "calendar" });
  for (const day of ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]) {
    grid.append(el("div", { class: "cal-head" }, day));
  }
  for (let i = 0; i < (start.getUTCDay() + 6) % 7; i++) grid.append(el("div", { class: "cal-pad" }));
  for (let d = new Date(start); d <= end; d.setUTCDate(d.getUTCDate() + 1)) {
    const date = isoDay(d);
    const run = byDate.get(date);
    const status = run ? run.status.toLowerCase() : "pending";
    grid.append(
      el(
        "div",
        { class: `cal-cell cal-${status}`, "data-date": date, "data-status": status, title: `${date}: ${status}` },
        el("span", { class: "cal-day" }, String(d.getUTCDate())),
        d.getUTCDate() === 1 || date === b.range_start_date
          ? el("span", { class: "cal-month" }, d.toLocaleString(undefined, { month: "short", timeZone: "UTC" }))
          : null,
      ),
    );
  }
  const legend = el(
    "p",
    { class: "legend" },
    ["completed", "running", "queued", "failed", "cancelled", "pending"].map((s) =>
      el("span", { class: "legend-item" }, el("span", { class: `swatch cal-${s}` }), s),
    ),
  );
  return el("div", {}, grid, legend);
}

function runsTable(runs) {
  if (!runs.length) return el("p", { class: "muted" }, "No runs yet.");
  return el(
    "table",
    { class: "runs", id: "runs" },
    el("thead", {}, el("tr", {}, ["Date", "Status", "Rows", "Seconds", "Message"].map((h) => el("th", {}, h)))),
    el(
      "tbody",
      {},
      runs.map((r) =>
        el(
          "tr",
          { "data-status": r.status },
          el("td", { "data-label": "Date", class: "nowrap" }, r.data_date),
          el("td", { "data-label": "Status" }, badge(r.status), r.attempt > 1 ? ` (attempt ${r.attempt})` : ""),
          el("td", { "data-label": "Rows" }, r.total_rows == null ? "—" : r.total_rows.toLocaleString()),
          el("td", { "data-label": "Seconds" }, r.total_duration == null ? "—" : r.total_duration.toFixed(2)),
          el("td", { "data-label": "Message", class: "message" }, r.error || r.message || ""),
        ),
      ),
    ),
  );
}

async function showBackfill(id) {
  const view = state.view;
  let backfill;
  try {
    await loadTransfers();
    backfill = (await api("GET", teamPath(`/backfills/${id}`))).data;
  } catch (e) {
    show(el("p", {}, el("a", { href: "#/backfills" }, "← Backfills")), errorBox(e));
    return;
  }
  if (view !== state.view) return;
  const summary = el("section", { class: "card", id: "summary" });
  const calendarBox = el("section", { class: "card" }, el("h2", {}, "Dates"));
  const report = el("section", { class: "card", id: "error-report" });
  const runsBox = el("section", { class: "card" }, el("h2", {}, "Runs"));
  let runs = [];

  const renderSummary = (b) => {
    const cancel =
      INCOMPLETE.includes(b.status) &&
      el("button", { type: "button", id: "cancel", class: "danger", onclick: () => cancelBackfill(b) }, "Cancel backfill");
    const fact = (label, value) => [el("dt", {}, label), el("dd", {}, value)];
    summary.replaceChildren(
      el("div", { class: "list-head" }, el("h1", {}, `Backfill #${b.transfer_backfill_id} `, badge(b.status)), cancel),
      progress(b),
      el(
        "dl",
        { class: "facts" },
        fact("Transfer", transferName(b.transfer_id)),
        fact("Dates", `${b.range_start_date} → ${b.range_end_date}`),
        fact("Created", when(b.created_time)),
        fact("Started", when(b.start_time)),
        fact("Ended", when(b.end_time)),
        fact("Runs", `${b.transfer_runs_completed} completed, ${b.transfer_runs_failed} failed, ${b.transfer_runs_total} in all`),
      ),
      el("p", { id: "cancel-error", class: "field-error", role: "alert" }),
    );
    report.hidden = !b.error_report.length;
    report.replaceChildren(
      el("h2", {}, "Error report"),
      el("ul", { class: "report" }, b.error_report.map((e) => el("li", {}, el("strong", {}, e.transfer_run_date), " ", e.error))),
    );
  };

  const loadRuns = async () => {
    const params = new URLSearchParams({
      start_date: backfill.range_start_date,
      end_date: backfill.range_end_date,
      limit: "10000",
    });
    try {
      const payload = await api("GET", teamPath(`/transfers/${backfill.transfer_id}/runs?${params}`));
      if (view !== state.view) return;
      runs = payload.data.filter((r) => r.transfer_backfill_id === backfill.transfer_backfill_id);
      calendarBox.replaceChildren(el("h2", {}, "Dates"), calendar(backfill, runs));
      runsBox.replaceChildren(el("h2", {}, `Runs (${runs.length})`), runsTable(runs));
    } catch (e) {
      runsBox.replaceChildren(el("h2", {}, "Runs"), errorBox(e));
    }
  };

  let timer = null;
  const refreshRunsSoon = (now) => {
    if (now) return loadRuns();
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      loadRuns();
    }, 1000);
  };

  const cancelBackfill = async (b) => {
    if (!window.confirm(`Cancel backfill #${b.transfer_backfill_id}? Queued dates will not run.`)) return;
    try {
      backfill = (await api("PATCH", teamPath(`/backfills/${b.transfer_backfill_id}`), { status: "CANCELLED" })).data;
      renderSummary(backfill);
      refreshRunsSoon(true);
    } catch (e) {
      summary.querySelector("#cancel-error").textContent = e.message;
    }
  };

  renderSummary(backfill);
  show(el("p", {}, el("a", { href: "#/backfills" }, "← Backfills")), summary, report, calendarBox, runsBox);
  await loadRuns();
  if (view !== state.view || ENDED.includes(backfill.status)) return;
  watch(backfill.transfer_backfill_id, (fresh, ended) => {
    if (view !== state.view) return;
    backfill = fresh;
    renderSummary(fresh);
    refreshRunsSoon(ended);
  });
}

// --- Routing ---------------------------------------------------------------------------------

function route(message) {
  state.view += 1;
  closeStreams();
  const nav = document.getElementById("nav");
  if (!state.teams.length) return showSignIn(typeof message === "string" ? message : "");
  nav.hidden = false;
  document.getElementById("switch-team").hidden = state.teams.length < 2;
  document.getElementById("team-name").textContent = state.team
    ? state.team.name || `Team ${state.team.team_id}`
    : "";
  if (!state.team || location.hash === "#/teams") return showTeams();
  const match = /^#\/backfills\/(\d+)$/.exec(location.hash);
  return match ? showBackfill(Number(match[1])) : showBackfills();
}

async function start() {
  window.addEventListener("hashchange", () => route());
  document.getElementById("sign-out").addEventListener("click", async () => {
    await api("DELETE", "/ui/session").catch(() => null);
    localStorage.removeItem("opendts.team");
    signedOut();
  });
  try {
    const data = await api("GET", "/ui/session");
    signedIn(data.teams);
  } catch (e) {
    showSignIn(e.status === 401 ? "" : e.message);
  }
}

start();
