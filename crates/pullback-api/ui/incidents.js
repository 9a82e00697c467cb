// Pullback UI: the incident list, an incident's overview (threat, alerts, quarantine results
// with restore, comments, close) and an alert with its CLEAR analysis.

import {
  can, api, h, replace, link, externalLink, badge, time, text, table, facts, section, notice,
  buildQuery, actionButton, json, pager,
} from "./dom.js";

// --- Words for states --------------------------------------------------------------------------

const STATUS_WORDS = {
  pending: "pending",
  in_progress: "in progress",
  quarantined: "quarantined",
  already_in_destination: "already in quarantine",
  not_found: "not found",
  failed: "failed",
  restored: "restored",
  would_quarantine: "would quarantine (dry run)",
  applied: "changed",
  reverted: "undone",
};

const KIND_WORDS = {
  message_delivered: "message delivered",
  message_blocked: "message blocked",
  click_permitted: "click permitted",
  click_blocked: "click blocked",
  search_export: "search export",
  json_event: "JSON event",
  abuse_report: "reported message",
  script: "script",
};

export function statusWord(status) {
  return STATUS_WORDS[status] ?? status;
}

export function kindWord(kind) {
  return KIND_WORDS[kind] ?? kind;
}

/** The counts of an incident list row as small badges. */
function quarantineCounts(q) {
  if (!q) return "";
  const parts = [];
  for (const [key, label] of [["quarantined", "quarantined"], ["restored", "restored"], ["failed", "failed"], ["pending", "pending"]]) {
    if (q[key]) parts.push(badge(`${q[key]} ${label}`, key));
  }
  return parts.length ? h("span", { class: "badges" }, parts) : h("span", { class: "muted" }, "none");
}

// --- Incident list -----------------------------------------------------------------------------

export async function incidentList(ctx) {
  const filters = {
    state: ctx.query.state ?? "open",
    source: ctx.query.source ?? "",
    classification: ctx.query.classification ?? "",
  };
  const params = { ...filters, state: filters.state === "all" ? "" : filters.state, cursor: ctx.query.cursor, limit: 50 };
  const [page, sources] = await Promise.all([
    api("GET", `/api/v1/incidents?${buildQuery(params)}`),
    api("GET", "/api/v1/sources").catch(() => []),
  ]);
  if (!ctx.alive()) return;

  const state = h(
    "select",
    { name: "state", id: "filter-state" },
    ["open", "closed", "all"].map((s) => h("option", { value: s, selected: s === filters.state }, s)),
  );
  const source = h(
    "select",
    { name: "source", id: "filter-source" },
    h("option", { value: "" }, "any source"),
    sources.map((s) => h("option", { value: s.name, selected: s.name === filters.source }, s.name)),
  );
  const classification = h("input", {
    name: "classification",
    id: "filter-classification",
    value: filters.classification,
    placeholder: "phish, malware…",
    list: "classification-options",
  });
  const form = h(
    "form",
    { class: "filters", id: "incident-filters" },
    h("label", {}, "State", state),
    h("label", {}, "Source", source),
    h("label", {}, "Classification", classification),
    h("datalist", { id: "classification-options" }, ["phish", "malware", "spam", "impostor", "malicious", "suspicious"].map((c) => h("option", { value: c }))),
    h("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.navigate(`/incidents?${buildQuery({ state: state.value, source: source.value, classification: classification.value.trim() })}`);
  });
  state.addEventListener("change", () => form.requestSubmit());
  source.addEventListener("change", () => form.requestSubmit());

  replace(
    ctx.main,
    h("div", { class: "page-head" }, h("h1", {}, "Incidents"), h("span", { class: "muted" }, "newest first")),
    form,
    table(
      [
        { title: "ID", cell: (i) => link(`/incidents/${i.id}`, `#${i.id}`), class: "num" },
        { title: "Title", cell: (i) => link(`/incidents/${i.id}`, i.title, { dataset: { test: "incident-link" } }), class: "wrap" },
        { title: "State", cell: (i) => badge(i.state, i.state) },
        { title: "Created (UTC)", cell: (i) => time(i.created_at), class: "nowrap" },
        { title: "Updated (UTC)", cell: (i) => time(i.updated_at), class: "nowrap" },
        { title: "Alerts", cell: (i) => String(i.alert_count), class: "num" },
        { title: "Sources", cell: (i) => text(i.sources) },
        { title: "Classifications", cell: (i) => text(i.classifications) },
        { title: "Quarantine", cell: (i) => quarantineCounts(i.quarantine) },
      ],
      page.items,
      {
        id: "incident-table",
        empty: "No incident matches these filters.",
        rowAttrs: (i) => ({ dataset: { test: "incident-row", id: i.id } }),
      },
    ),
    pager("/incidents", { ...filters, cursor: ctx.query.cursor }, page.next_cursor),
  );
}

// --- Incident overview -------------------------------------------------------------------------

/** Whether a result of a quarantine job still holds a message a restore could put back, or a
 * directory change an undo could revert. */
function restorable(job, result) {
  if (result.was_undone) return false;
  if (job.action?.type === "directory") return result.status === "applied";
  return (
    job.action?.type === "quarantine" &&
    !job.dry_run &&
    (result.status === "quarantined" || result.status === "already_in_destination")
  );
}

/** The state to show for a result: a result a restore or an undo reversed says so. */
function effectiveState(job, result) {
  if (job.action?.type === "quarantine" && result.was_undone) return "restored";
  if (job.action?.type === "directory" && result.was_undone) return "reverted";
  return result.status;
}

/** Words for a directory change, as the API describes it. */
function changeWords(change) {
  switch (change?.type) {
    case "add_to_group": return `add to group ${change.group}`;
    case "remove_from_group": return `remove from group ${change.group}`;
    case "set_attribute": return `set ${change.attribute} to ${(change.values ?? []).join(", ") || "nothing"}`;
    default: return "directory change";
  }
}

function jobLabel(job, jobs) {
  if (job.action?.type === "restore") {
    const original = jobs?.find((j) => j.id === job.action.original);
    const verb = original?.action?.type === "directory" ? "undo" : "restore";
    return `#${job.id} ${verb} of #${job.action.original}`;
  }
  if (job.action?.type === "directory") return `#${job.id} directory: ${changeWords(job.action.change)}`;
  return `#${job.id} quarantine${job.dry_run ? " (dry run)" : ""}`;
}

export async function incidentPage(ctx) {
  const id = ctx.params.id;
  let incident = await api("GET", `/api/v1/incidents/${encodeURIComponent(id)}`);
  if (!ctx.alive()) return;

  const head = h("div", { id: "incident-head" });
  const actions = h("div", { class: "actions", id: "incident-actions" });
  const messages = h("div", { id: "incident-messages" });
  const quarantine = h("div", { id: "quarantine" });
  const comments = h("div", { id: "comment-list" });
  /** Restores asked for and not yet seen done: {jobs: [ids], recipients: [[job, r]], until}. */
  let watching = null;

  const say = (kind, message, attrs) => replace(messages, message ? notice(kind, message, attrs) : null);

  async function refresh() {
    try {
      incident = await api("GET", `/api/v1/incidents/${encodeURIComponent(id)}`);
    } catch (e) {
      if (ctx.alive()) say("error", `Could not refresh: ${e.message}`);
      return;
    }
    if (!ctx.alive()) return;
    if (watching && (restoreSettled(incident, watching) || Date.now() > watching.until)) {
      const settled = restoreSettled(incident, watching);
      watching = null;
      say(settled ? "ok" : "error", settled ? "Restore finished." : "The restore is taking long; the results below show where it stands.", { id: "restore-progress" });
    }
    draw();
  }

  async function restore(path, body, targets) {
    say("info", "Asking for the restore…", { id: "restore-progress" });
    try {
      const answer = await api("POST", path, body);
      watching = { jobs: answer?.jobs ?? [], targets, until: Date.now() + 120000 };
      say("info", "Restoring… the results update as the worker puts messages back.", { id: "restore-progress", dataset: { test: "restoring" } });
      await refresh();
    } catch (e) {
      say("error", `Restore refused: ${e.message}`, { id: "restore-progress" });
    }
  }

  function draw() {
    const quarantineJobs = incident.jobs.filter((j) => j.action?.type === "quarantine");
    const anyRestorable = quarantineJobs.some((j) => j.results.some((r) => restorable(j, r)));
    replace(
      head,
      h(
        "div",
        { class: "page-head" },
        h("h1", {}, h("span", { class: "muted" }, `Incident #${incident.id} `), h("span", { id: "incident-title" }, incident.title)),
        badge(incident.state, incident.state, { id: "incident-state" }),
      ),
      facts([
        ["Created (UTC)", time(incident.created_at)],
        ["Updated (UTC)", time(incident.updated_at)],
        ["Sources", incident.sources],
        ["Classifications", incident.classifications],
        ["Linked by", (incident.links ?? []).map((l) => `${l.by}: ${l.value}`)],
      ]),
    );
    replace(
      actions,
      can("analyst") && anyRestorable
        ? confirmButton("Restore every quarantined message", "Put every quarantined message of this incident back in its inbox?", () =>
            restore(`/api/v1/incidents/${incident.id}/restore`, undefined, allTargets(incident)),
          { id: "incident-restore" })
        : null,
      can("analyst") && incident.state === "open"
        ? actionButton("Close incident", async () => {
            try {
              await api("POST", `/api/v1/incidents/${incident.id}/close`);
              say("ok", "Incident closed.");
              await refresh();
            } catch (e) {
              say("error", `Could not close: ${e.message}`);
            }
          }, { id: "incident-close" })
        : null,
    );
    replace(quarantine, quarantineTable(incident, { restore }));
    replace(comments, commentList(incident.comments ?? []));
  }

  draw();
  replace(
    ctx.main,
    h("p", { class: "crumbs" }, link("/incidents", "Incidents"), " / ", `#${incident.id}`),
    head,
    actions,
    messages,
    section("Threat", { id: "threat" }, threatDescription(incident)),
    section("Quarantine", { id: "quarantine-section" }, quarantine),
    section("Alerts", { id: "alerts-section" }, alertTable(incident.alerts)),
    peopleSection(incident.directory),
    clearSection(incident),
    section("Comments", { id: "comments" }, comments, can("analyst") ? commentForm(incident.id, say, refresh) : null),
  );
  ctx.every(1500, () => {
    if (watching || incident.jobs.some((j) => j.results.some((r) => r.status === "pending" || r.status === "in_progress"))) {
      refresh();
    }
  });
}

function allTargets(incident) {
  const targets = [];
  for (const job of incident.jobs) {
    for (const r of job.results) if (restorable(job, r)) targets.push([job.id, r.recipient]);
  }
  return targets;
}

/** Whether every restore asked for has reached a final state. */
function restoreSettled(incident, watching) {
  const jobs = new Map(incident.jobs.map((j) => [j.id, j]));
  const newJobsDone = watching.jobs.every((id) => {
    const job = jobs.get(id);
    return job && job.results.every((r) => r.status !== "pending" && r.status !== "in_progress");
  });
  const targetsChanged = watching.targets.every(([jobId, recipient]) => {
    const job = jobs.get(jobId);
    const result = job?.results.find((r) => r.recipient === recipient);
    return !result || !restorable(job, result);
  });
  return newJobsDone && targetsChanged;
}

/** A button that asks once more, inline, before it acts. */
function confirmButton(label, question, action, attrs = {}) {
  const holder = h("span", { class: "confirm" });
  const ask = () => {
    const yes = actionButton("Yes, restore", async () => {
      await action();
    }, { class: "danger", dataset: { test: "confirm-yes" } });
    const no = h("button", { type: "button", dataset: { test: "confirm-no" }, on: { click: reset } }, "Cancel");
    replace(holder, h("span", { class: "question" }, question), " ", yes, " ", no);
  };
  const reset = () => replace(holder, h("button", { type: "button", ...attrs, on: { click: ask } }, label));
  reset();
  return holder;
}

function quarantineTable(incident, { restore }) {
  const rows = [];
  const jobs = [...incident.jobs].sort((a, b) => a.id - b.id);
  for (const job of jobs) for (const result of job.results) rows.push({ job, result });
  if (rows.length === 0) {
    return h("p", { class: "empty" }, "No job: no match condition asked to pull these messages or to change the directory.");
  }
  const count = (state) => rows.filter((r) => r.job.action?.type === "quarantine" && effectiveState(r.job, r.result) === state).length;
  const summary = h(
    "p",
    { class: "badges", id: "quarantine-summary" },
    ["quarantined", "already_in_destination", "restored", "failed", "not_found", "pending", "in_progress"]
      .map((s) => [s, count(s)])
      .filter(([, n]) => n > 0)
      .map(([s, n]) => badge(`${n} ${statusWord(s)}`, s)),
  );
  return h(
    "div",
    {},
    summary,
    table(
      [
        { title: "Recipient", cell: (r) => r.result.recipient, test: "recipient" },
        {
          title: "Status",
          cell: (r) => {
            const state = effectiveState(r.job, r.result);
            return badge(statusWord(state), state, {
              dataset: { test: "quarantine-status", state },
              title: r.result.was_undone ? "Quarantined, then put back by a restore job" : "",
            });
          },
        },
        { title: "Job", cell: (r) => jobLabel(r.job, incident.jobs), class: "nowrap" },
        { title: "Message-ID", cell: (r) => h("code", { class: "clip" }, text(r.job.message_id)) },
        { title: "Details", cell: (r) => r.result.details, class: "wrap" },
        { title: "Attempts", cell: (r) => String(r.result.attempts ?? 0), class: "num" },
        { title: "Ended (UTC)", cell: (r) => time(r.result.end_time), class: "nowrap" },
        {
          title: "",
          cell: (r) =>
            can("analyst") && restorable(r.job, r.result) && r.job.action?.type === "directory"
              ? confirmButton("Undo", `Undo "${changeWords(r.job.action.change)}" for ${r.result.recipient}?`, () =>
                  restore(`/api/v1/jobs/${r.job.id}/restore`, { recipients: [r.result.recipient] }, [[r.job.id, r.result.recipient]]),
                { class: "small", dataset: { test: "undo-recipient", recipient: r.result.recipient, job: r.job.id } })
              : can("analyst") && restorable(r.job, r.result)
              ? confirmButton("Restore", `Put ${r.result.recipient}'s message back?`, () =>
                  restore(`/api/v1/jobs/${r.job.id}/restore`, { recipients: [r.result.recipient] }, [[r.job.id, r.result.recipient]]),
                { class: "small", dataset: { test: "restore-recipient", recipient: r.result.recipient, job: r.job.id } })
              : "",
        },
      ],
      rows,
      {
        id: "quarantine-table",
        rowAttrs: (r) => ({
          dataset: {
            test: "quarantine-row",
            recipient: r.result.recipient,
            job: r.job.id,
            action: r.job.action?.type,
            state: effectiveState(r.job, r.result),
          },
        }),
      },
    ),
  );
}

/** The threat: the incident's description (with CLEAR's summary) and each threat seen. */
function threatDescription(incident) {
  const threats = [];
  const seen = new Set();
  for (const alert of incident.alerts ?? []) {
    for (const t of alert.threats ?? []) {
      const key = `${t.kind}|${t.value}|${t.classification}`;
      if (seen.has(key)) continue;
      seen.add(key);
      threats.push(t);
    }
  }
  return h(
    "div",
    {},
    incident.description
      ? h("p", { class: "description", id: "incident-description" }, incident.description)
      : h("p", { class: "muted", id: "incident-description" }, "No description."),
    threats.length ? threatTable(threats) : null,
  );
}

/** CLEAR's analyses of the incident's reported messages, reason by reason. */
function clearSection(incident) {
  const analysed = (incident.alerts ?? []).filter((a) => a.analysis);
  if (analysed.length === 0) return null;
  return section(
    "CLEAR analysis",
    { id: "incident-clear" },
    analysed.map((a) =>
      h(
        "div",
        { class: "clear-inline" },
        h("h3", {}, "Reported message, ", link(`/alerts/${a.id}`, `alert #${a.id}`), a.subject ? `: ${a.subject}` : ""),
        clearAnalysis(a.analysis),
      ),
    ),
  );
}

function threatTable(threats) {
  return table(
    [
      { title: "Type", cell: (t) => text(t.kind) },
      { title: "Threat", cell: (t) => h("code", { class: "clip" }, text(t.value)) },
      { title: "Threat Hostname", cell: (t) => text(t.hostname) },
      { title: "Classification", cell: (t) => (t.classification ? badge(t.classification, t.classification) : "") },
      { title: "Status", cell: (t) => text(t.status) },
      { title: "Campaign", cell: (t) => h("code", { class: "clip" }, text(t.campaign_id)) },
      { title: "Dashboard", cell: (t) => (t.dashboard_url ? externalLink(t.dashboard_url, "open") : "") },
    ],
    threats,
    { class: "grid compact", id: "threat-table" },
  );
}

function alertTable(alerts) {
  return table(
    [
      { title: "ID", cell: (a) => link(`/alerts/${a.id}`, `#${a.id}`, { dataset: { test: "alert-link" } }), class: "num" },
      { title: "Time (UTC)", cell: (a) => time(a.time), class: "nowrap" },
      { title: "Source", cell: (a) => a.source },
      { title: "Kind", cell: (a) => kindWord(a.kind) },
      { title: "Classification", cell: (a) => text([...new Set((a.threats ?? []).map((t) => t.classification).filter(Boolean))]) },
      { title: "Sender", cell: (a) => text(a.sender) },
      { title: "Recipients", cell: (a) => text(a.recipients), class: "wrap" },
      { title: "Subject", cell: (a) => text(a.subject), class: "wrap" },
      { title: "Verdict", cell: (a) => (a.analysis ? dispositionBadge(a.analysis) : "") },
    ],
    alerts ?? [],
    { id: "alert-table", rowAttrs: (a) => ({ dataset: { test: "alert-row", id: a.id } }) },
  );
}

function commentList(comments) {
  if (comments.length === 0) return h("p", { class: "empty" }, "No comment yet.");
  return h(
    "ol",
    { class: "comments" },
    comments.map((c) =>
      h(
        "li",
        { dataset: { test: "comment" } },
        h("div", { class: "comment-meta" }, h("strong", {}, c.author), " ", time(c.at)),
        h("p", { class: "comment-text" }, c.text),
      ),
    ),
  );
}

function commentForm(id, say, refresh) {
  const textArea = h("textarea", { id: "comment-text", rows: 3, placeholder: "What you found, what you did…", maxlength: 10000 });
  const submit = h("button", { type: "submit", id: "comment-submit" }, "Add comment");
  const form = h("form", { class: "comment-form" }, textArea, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = textArea.value.trim();
    if (!value) return;
    submit.disabled = true;
    try {
      await api("POST", `/api/v1/incidents/${id}/comments`, { text: value });
      textArea.value = "";
      await refresh();
    } catch (e) {
      say("error", `Comment not added: ${e.message}`);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

// --- Alert -------------------------------------------------------------------------------------

/** A message for the next rendering of the alert page, after a change reloaded it. */
let flash = null;

/** The disposition that stands: an analyst's override, else CLEAR's. */
function disposition(analysis) {
  return analysis.override?.disposition ?? analysis.disposition;
}

function dispositionBadge(analysis) {
  const d = disposition(analysis);
  return badge(analysis.override ? `${d} (override)` : d, d);
}

/** CLEAR's analysis of a reported message: verdict, score, reasons, problems. */
export function clearAnalysis(analysis) {
  const reasons = analysis.reasons ?? [];
  return h(
    "div",
    { class: "clear" },
    facts([
      ["Disposition", h("span", { id: "clear-disposition" }, dispositionBadge(analysis))],
      ["CLEAR said", analysis.override ? analysis.disposition : null],
      ["Score", h("span", { id: "clear-score" }, text(analysis.score))],
      ["Summary", analysis.summary],
      [
        "Override",
        analysis.override
          ? `${analysis.override.by} set ${analysis.override.disposition} at ${analysis.override.at}: ${analysis.override.reason}`
          : null,
      ],
    ]),
    reasons.length
      ? table(
          [
            { title: "Weight", cell: (r) => h("span", { class: r.weight >= 0 ? "weight-bad" : "weight-good" }, `${r.weight > 0 ? "+" : ""}${r.weight}`), class: "num" },
            { title: "Evidence", cell: (r) => h("code", {}, text(r.code)) },
            { title: "Item", cell: (r) => h("code", { class: "item" }, text(r.item)), class: "wrap" },
            { title: "Why", cell: (r) => text(r.text), class: "wrap" },
          ],
          reasons,
          { class: "grid compact", rowAttrs: () => ({ dataset: { test: "clear-reason" } }) },
        )
      : h("p", { class: "muted" }, "No evidence either way."),
    (analysis.problems ?? []).length
      ? h("div", { class: "problems" }, h("h3", {}, "Could not examine"), h("ul", {}, analysis.problems.map((p) => h("li", {}, p))))
      : null,
  );
}

export async function alertPage(ctx) {
  const id = ctx.params.id;
  const alert = await api("GET", `/api/v1/alerts/${encodeURIComponent(id)}`);
  if (!ctx.alive()) return;
  const messages = h("div", { id: "alert-messages" }, flash ? notice("ok", flash) : null);
  flash = null;
  const say = (kind, message) => replace(messages, notice(kind, message));

  replace(
    ctx.main,
    h(
      "p",
      { class: "crumbs" },
      alert.incident_id != null ? [link(`/incidents/${alert.incident_id}`, `Incident #${alert.incident_id}`), " / "] : null,
      `Alert #${alert.id}`,
    ),
    h("div", { class: "page-head" }, h("h1", {}, h("span", { class: "muted" }, `Alert #${alert.id} `), text(alert.subject) || "(no subject)")),
    messages,
    section(
      "Message",
      { id: "alert-summary" },
      facts([
        ["Source", alert.source],
        ["Kind", kindWord(alert.kind)],
        ["Time (UTC)", time(alert.time)],
        ["Received (UTC)", time(alert.received_at)],
        ["Message-ID", alert.message_id ? h("code", {}, alert.message_id) : null],
        ["Subject", alert.subject],
        ["Sender", alert.sender],
        ["Recipients", alert.recipients],
        ["Incident", alert.incident_id != null ? link(`/incidents/${alert.incident_id}`, `#${alert.incident_id}`) : "none"],
        ["Match conditions", alert.matched?.length ? alert.matched : "none fired"],
        ["Dedup key", alert.dedup_key ? h("code", {}, alert.dedup_key) : null],
        ["Link", alert.link],
      ]),
    ),
    section("Threats", { id: "alert-threats" }, (alert.threats ?? []).length ? threatTable(alert.threats) : h("p", { class: "empty" }, "No threat listed.")),
    alert.analysis
      ? section(
          "CLEAR analysis",
          { id: "clear-analysis" },
          clearAnalysis(alert.analysis),
          can("analyst") ? verdictForm(alert, say, () => ctx.navigate(`/alerts/${alert.id}`)) : null,
        )
      : null,
    peopleSection(alert.directory),
    (alert.notes ?? []).length ? section("Notes", {}, h("ul", {}, alert.notes.map((n) => h("li", {}, n)))) : null,
    h(
      "details",
      { class: "panel raw", id: "alert-raw" },
      h("summary", {}, "Raw event as the source sent it"),
      h("pre", { class: "json" }, json(alert.raw)),
    ),
  );
}

/** Who the recipients are, from the imported directory: nothing when none is imported. */
function peopleSection(directory) {
  const people = Object.entries(directory ?? {});
  if (people.length === 0) return null;
  const name = (dn) => (dn ?? "").split(",")[0].replace(/^[^=]*=/, "");
  const extra = (record) =>
    Object.entries(record.attributes ?? {}).map(([k, v]) => `${k}: ${v.join(", ")}`).join("; ");
  return section(
    "People",
    { id: "people" },
    table(
      [
        { title: "Address", cell: ([address]) => address, test: "person-address" },
        { title: "Name", cell: ([, r]) => r.display_name ?? (r.kind === "group" ? name(r.dn) : "") },
        { title: "Kind", cell: ([, r]) => (r.kind === "group" ? `list of ${(r.members ?? []).length}` : r.kind ?? "") },
        { title: "Department", cell: ([, r]) => r.department ?? "" },
        { title: "Title", cell: ([, r]) => r.title ?? "" },
        { title: "Manager", cell: ([, r]) => name(r.manager) },
        { title: "Groups", cell: ([, r]) => (r.groups ?? []).filter((g) => !g.includes("=")).join(", "), class: "wrap" },
        { title: "Attributes", cell: ([, r]) => extra(r), class: "wrap" },
      ],
      people,
      { id: "people-table", rowAttrs: ([address]) => ({ dataset: { test: "person-row", address } }) },
    ),
  );
}

function verdictForm(alert, say, reload) {
  const current = disposition(alert.analysis);
  const select = h(
    "select",
    { id: "verdict-disposition" },
    ["malicious", "suspicious", "bulk", "clean"].map((d) => h("option", { value: d, selected: d === current }, d)),
  );
  const reason = h("input", { id: "verdict-reason", placeholder: "Why (kept in the incident's comments)", required: true, size: 50 });
  const submit = h("button", { type: "submit", id: "verdict-submit" }, "Override verdict");
  const form = h("form", { class: "inline-form" }, h("span", { class: "label" }, "Analyst verdict"), select, reason, submit);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    try {
      const answer = await api("POST", `/api/v1/alerts/${alert.id}/verdict`, { disposition: select.value, reason: reason.value.trim() });
      const jobs = answer?.jobs?.length ? ` It started quarantine job ${answer.jobs.join(", ")}.` : "";
      flash = `Verdict recorded.${jobs}`;
      reload();
    } catch (e) {
      say("error", `Verdict not recorded: ${e.message}`);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}
