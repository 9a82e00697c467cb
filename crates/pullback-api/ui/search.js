// Pullback UI: searching alerts by threat, URL, host, recipient, sender, subject, Message-ID,
// hash and time, in a basic or a detailed view, with cursor paging and a CSV export.

import { api, h, replace, link, badge, time, text, table, notice, buildQuery, externalLink } from "./dom.js";
import { kindWord, statusWord } from "./incidents.js";

/** The form's fields, named as the API's parameters. */
const FIELDS = [
  { name: "threat_url", label: "Threat URL", hint: "the threat's dashboard link (threatUrl)", wide: true },
  { name: "url", label: "URL", hint: "a URL in the message", wide: true },
  { name: "host", label: "Host", hint: "also matches its subdomains" },
  { name: "recipient", label: "Recipient", hint: "an e-mail address" },
  { name: "sender", label: "Sender", hint: "an e-mail address" },
  { name: "subject", label: "Subject", hint: "words of the subject" },
  { name: "message_id", label: "Message-ID", hint: "with or without <>" },
  { name: "hash", label: "Hash", hint: "SHA-256 or MD5, hex" },
  { name: "classification", label: "Classification", hint: "phish, malware…" },
  { name: "source", label: "Source", hint: "a source's name" },
  { name: "state", label: "Incident state", options: [["", "any"], ["open", "open"], ["closed", "closed"]] },
  { name: "after", label: "After", hint: "YYYY-MM-DD or RFC 3339" },
  { name: "before", label: "Before", hint: "YYYY-MM-DD or RFC 3339" },
  { name: "limit", label: "Rows per page", hint: "50", type: "number" },
];

const CRITERIA = FIELDS.map((f) => f.name).filter((n) => n !== "limit");

export async function searchPage(ctx) {
  const query = ctx.query;
  const view = query.view === "detailed" ? "detailed" : "basic";
  const inputs = {};
  const error = h("p", { id: "search-error", class: "notice notice-error", role: "alert", hidden: true });

  const fields = FIELDS.map((f) => {
    let input;
    if (f.options) {
      input = h("select", { name: f.name, id: `search-${f.name}` }, f.options.map(([v, l]) => h("option", { value: v, selected: (query[f.name] ?? "") === v }, l)));
    } else {
      input = h("input", {
        name: f.name,
        id: `search-${f.name}`,
        value: query[f.name] ?? "",
        placeholder: f.hint,
        type: f.type ?? "text",
        min: f.type === "number" ? 1 : undefined,
        max: f.type === "number" ? 500 : undefined,
        spellcheck: "false",
      });
    }
    inputs[f.name] = input;
    return h("label", { class: f.wide ? "wide" : "" }, f.label, input);
  });

  const viewToggle = h(
    "div",
    { class: "segmented", role: "group", "aria-label": "View" },
    ["basic", "detailed"].map((v) =>
      h("button", { type: "button", id: `view-${v}`, class: v === view ? "active" : "", "aria-pressed": String(v === view), on: { click: () => go(v) } }, v === "basic" ? "Basic" : "Detailed"),
    ),
  );
  const form = h(
    "form",
    { class: "search-form", id: "search-form" },
    h("div", { class: "search-fields" }, fields),
    h(
      "div",
      { class: "search-buttons" },
      h("button", { type: "submit", class: "primary", id: "search-submit" }, "Search"),
      h("button", { type: "button", id: "search-clear", on: { click: () => ctx.navigate("/search") } }, "Clear"),
      h("span", { class: "label" }, "View"),
      viewToggle,
      error,
    ),
  );

  function criteria() {
    const out = {};
    for (const name of Object.keys(inputs)) {
      const value = inputs[name].value.trim();
      if (value) out[name] = value;
    }
    return out;
  }

  function go(newView) {
    ctx.navigate(`/search?${buildQuery({ ...criteria(), view: newView === "basic" ? "" : newView })}`);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go(view);
  });

  const results = h("div", { id: "search-output" });
  replace(ctx.main, h("div", { class: "page-head" }, h("h1", {}, "Search")), form, results);

  const asked = CRITERIA.some((name) => query[name]);
  if (!asked) {
    replace(results, h("p", { class: "muted" }, "Fill in any field; fields combine. A threat URL finds every alert about that threat."));
    return;
  }

  const params = {};
  for (const f of FIELDS) if (query[f.name]) params[f.name] = query[f.name];
  replace(results, h("p", { class: "loading" }, "Searching…"));
  let answer;
  try {
    answer = await api("GET", `/api/v1/search?${buildQuery({ ...params, view, cursor: query.cursor })}`);
  } catch (e) {
    if (!ctx.alive()) return;
    if (e.status === 400) {
      showError(error, inputs, e.message);
      replace(results);
      return;
    }
    throw e;
  }
  if (!ctx.alive()) return;

  const { limit: _limit, ...exportParams } = params;
  const csv = h(
    "a",
    { id: "search-csv", class: "button", href: `/api/v1/search?${buildQuery({ ...exportParams, view, format: "csv" })}`, download: "pullback-search.csv" },
    "Export CSV",
  );
  const alerts = answer.alerts ?? [];
  const incidents = answer.incidents ?? [];
  const next = answer.next_cursor != null
    ? link(`/search?${buildQuery({ ...params, view: view === "basic" ? "" : view, cursor: answer.next_cursor })}`, "Next page »", { id: "search-next" })
    : null;
  const first = query.cursor
    ? link(`/search?${buildQuery({ ...params, view: view === "basic" ? "" : view })}`, "« First page", { id: "search-first" })
    : null;

  replace(
    results,
    incidents.length
      ? h(
          "section",
          { class: "panel", id: "search-incidents" },
          h("h2", {}, `Incidents (${incidents.length})`),
          table(
            [
              { title: "ID", cell: (i) => link(`/incidents/${i.id}`, `#${i.id}`), class: "num" },
              { title: "Title", cell: (i) => link(`/incidents/${i.id}`, i.title), class: "wrap" },
              { title: "State", cell: (i) => badge(i.state, i.state) },
              { title: "Created (UTC)", cell: (i) => time(i.created_at), class: "nowrap" },
              { title: "Alerts", cell: (i) => text(i.alert_count), class: "num" },
            ],
            incidents,
            { class: "grid compact" },
          ),
        )
      : null,
    h(
      "section",
      { class: "panel" },
      h(
        "div",
        { class: "panel-head" },
        h("h2", {}, `Alerts (${alerts.length}${answer.next_cursor != null ? "+" : ""})`),
        h("span", { class: "muted" }, `${view} view`),
        csv,
      ),
      answer.partial
        ? notice("info", "This page stopped after looking through as many alerts as one page may; the next page goes on.", { id: "search-partial" })
        : null,
      h("div", { class: "scroll" }, resultTable(alerts, view)),
      first || next ? h("div", { class: "pager" }, first, next) : null,
    ),
  );
}

/** Shows a 400's message by the form, and marks the field it names. */
function showError(error, inputs, message) {
  error.textContent = message;
  error.hidden = false;
  for (const [name, input] of Object.entries(inputs)) {
    const named = new RegExp(`(^|[^a-z_])${name}([^a-z_]|$)`).test(message);
    input.classList.toggle("invalid", named);
    if (named) input.setAttribute("aria-invalid", "true");
  }
}

function columns(view) {
  const basic = [
    { title: "Alert", cell: (r) => link(`/alerts/${r.alert_id}`, `#${r.alert_id}`), class: "num" },
    { title: "Time (UTC)", cell: (r) => time(r.time), class: "nowrap" },
    { title: "Threat Hostname", cell: (r) => text(r.threat_hostname), test: "threat-hostname", class: "key" },
    { title: "Email Recipient", cell: (r) => text(r.email_recipient), test: "email-recipient", class: "key" },
    {
      title: "Classification",
      cell: (r) => h("span", { class: "badges" }, String(r.classification ?? "").split(/,\s*/).filter(Boolean).map((c) => badge(c, c))),
    },
    { title: "Threat", cell: (r) => h("code", { class: "clip", title: text(r.threat) }, text(r.threat)), test: "threat" },
    { title: "Sender", cell: (r) => h("span", { class: "clip", title: text(r.sender) }, text(r.sender)) },
    { title: "Subject", cell: (r) => text(r.subject), class: "wrap" },
    { title: "Source", cell: (r) => text(r.source) },
    { title: "Kind", cell: (r) => kindWord(r.kind), class: "nowrap" },
    {
      title: "Incident",
      cell: (r) => (r.incident_id != null ? h("span", { class: "nowrap" }, link(`/incidents/${r.incident_id}`, `#${r.incident_id}`), " ", r.incident_state ? badge(r.incident_state, r.incident_state) : null) : ""),
    },
  ];
  if (view !== "detailed") return basic;
  return [
    ...basic,
    { title: "Received (UTC)", cell: (r) => time(r.received_at), class: "nowrap" },
    { title: "Message-ID", cell: (r) => h("code", { class: "clip" }, text(r.message_id)), test: "message-id" },
    {
      title: "Threat URL",
      cell: (r) => (r.threat_url ? h("span", { class: "clip", title: r.threat_url }, externalLink(r.threat_url, text(r.threat_url))) : ""),
      test: "threat-url",
    },
    { title: "Hashes", cell: (r) => hashes(r.hashes) },
    { title: "Campaign", cell: (r) => h("code", { class: "clip" }, text(r.campaign_id)) },
    { title: "Matched", cell: (r) => text(r.matched) },
    { title: "Quarantine", cell: (r) => quarantine(r.quarantine), test: "quarantine" },
  ];
}

function hashes(value) {
  if (!value) return "";
  const list = Array.isArray(value) ? value : typeof value === "object" ? Object.entries(value).map(([k, v]) => `${k}: ${text(v)}`) : [value];
  return h("span", { class: "stack" }, list.map((v) => h("code", { class: "clip hash", title: text(v) }, text(v))));
}

function quarantine(list) {
  if (!Array.isArray(list) || list.length === 0) return h("span", { class: "muted" }, "none");
  return h(
    "span",
    { class: "stack" },
    list.map((q) => {
      const state = q.restored ? "restored" : q.status;
      return h("span", {}, `${q.recipient} `, badge(statusWord(state), state));
    }),
  );
}

function resultTable(rows, view) {
  return table(columns(view), rows, {
    id: "search-results",
    class: `grid results-${view}`,
    empty: "No alert matches.",
    dataset: { view },
    rowAttrs: (r) => ({ dataset: { test: "search-row", alert: r.alert_id } }),
  });
}
