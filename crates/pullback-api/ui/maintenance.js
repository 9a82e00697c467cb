// Pullback UI: keeping the appliance healthy. The Backups and Purges pages, and the
// recommendations shown above every page to everyone signed in.
//
// Backups and purges run in the background: the pages start them, then ask the API every
// second how far they got until they end.

import { session, can, api, h, replace, badge, time, text, table, facts, section, notice, actionButton } from "./dom.js";

// --- Words and small pieces --------------------------------------------------------------------

/** A number of bytes as `1.4 MiB`. */
export function bytes(value) {
  let n = Number(value) || 0;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 1 : 0)} ${units[unit]}`;
}

/** The percentage a record shows, 0 to 100. */
function percent(record) {
  const value = Math.round(Number(record.progress) || 0);
  return Math.max(0, Math.min(100, value));
}

/** A progress bar with its percentage beside it. */
function progressBar(record, attrs = {}) {
  const value = percent(record);
  return h(
    "span",
    { class: "progress" },
    h("progress", { class: "bar", max: 100, value, dataset: { state: record.state }, "aria-label": "progress", ...attrs }),
    h("span", { class: "progress-percent", dataset: { test: "progress-percent" } }, `${value}%`),
  );
}

/** What a backup holds: `alerts 120, incidents 4`. */
function counts(record) {
  const entries = Object.entries(record.counts ?? {});
  if (entries.length === 0) return "";
  return entries.map(([name, n]) => `${name} ${n}`).join(", ");
}

/** The targets as options of a select; `chosen` is selected, kept even if unknown here. */
function targetOptions(targets, chosen, { none } = {}) {
  const options = targets.map((t) => h("option", { value: t.name, selected: t.name === chosen }, `${t.name} (${t.location})`));
  if (chosen && !targets.some((t) => t.name === chosen)) {
    options.push(h("option", { value: chosen, selected: true }, `${chosen} (not configured on this node)`));
  }
  if (none) options.unshift(h("option", { value: "", selected: !chosen }, "none"));
  return options;
}

/**
 * A button that asks once more before running `action`: `question` and Yes/Cancel appear in
 * its place. The Yes button is `[data-test=confirm-yes]`.
 */
function confirmButton(label, question, yesLabel, action, attrs = {}) {
  const holder = h("span", { class: "confirm" });
  const ask = () => {
    const yes = actionButton(yesLabel, async () => {
      await action();
      reset();
    }, { class: "danger", dataset: { test: "confirm-yes" } });
    const no = h("button", { type: "button", dataset: { test: "confirm-no" }, on: { click: () => reset() } }, "Cancel");
    replace(holder, h("span", { class: "question" }, typeof question === "function" ? question() : question), " ", yes, " ", no);
  };
  const reset = () => replace(holder, h("button", { type: "button", ...attrs, on: { click: ask } }, label));
  reset();
  return holder;
}

/** Marks the inputs whose field name the server's message mentions (`cron: minute: ...`). */
function markFields(inputs, message) {
  for (const [name, input] of Object.entries(inputs)) {
    const named = new RegExp(`(^|[^a-z_])${name}([^a-z_]|$)`).test(message ?? "");
    input.classList.toggle("invalid", named);
    if (named) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
}

/** A whole number of days typed in `input`, or an error naming `field`. */
function days(input, field) {
  const value = input.value.trim();
  if (!/^\d+$/.test(value)) throw new Error(`${field}: a whole number of days, not ${JSON.stringify(value)}`);
  return Number(value);
}

// --- Recommendations -------------------------------------------------------------------------

const ACTION_LABELS = {
  schedule_backup: "Schedule backups",
  schedule_purge: "Schedule a purge",
};

/** The banner the shell shows above every page, and the newest request that fills it. */
const banner = { element: null, navigate: null, request: 0 };

/** Makes the banner for a new shell; `navigate` goes to a route of the UI. */
export function recommendationsBanner(navigate) {
  banner.element = h("div", { id: "recommendations", class: "recommendations", hidden: true, "aria-label": "Recommendations" });
  banner.navigate = navigate;
  return banner.element;
}

/** Asks the API for the recommendations and shows them; keeps what is shown if it cannot. */
export async function refreshRecommendations() {
  const element = banner.element;
  if (!element) return;
  const request = ++banner.request;
  let list;
  try {
    list = await api("GET", "/api/v1/recommendations");
  } catch {
    return;
  }
  if (request !== banner.request || element !== banner.element) return;
  replace(element, (list ?? []).map(recommendation));
  element.hidden = !list || list.length === 0;
}

function recommendation(r) {
  const status = h("span", { class: "recommendation-status" });
  const mark = (what) => async () => {
    try {
      await api("POST", `/api/v1/recommendations/${encodeURIComponent(r.id)}/${what}`);
    } catch (e) {
      replace(status, h("span", { class: "error-text" }, e.message));
      return;
    }
    await refreshRecommendations();
  };
  const acknowledged = r.acknowledged_by
    ? h(
        "span",
        { class: "recommendation-seen", dataset: { test: "recommendation-acknowledged" } },
        `Acknowledged by ${r.acknowledged_by}`,
        r.acknowledged_at ? [" on ", time(r.acknowledged_at), " UTC"] : null,
      )
    : null;
  const label = ACTION_LABELS[r.action];
  const act = can("admin") && label
    ? h(
        "button",
        {
          type: "button",
          class: "small primary",
          dataset: { test: "recommendation-action", action: r.action },
          on: { click: () => banner.navigate?.(`/purges?schedule=${encodeURIComponent(r.action)}`) },
        },
        label,
      )
    : null;
  return h(
    "div",
    {
      class: `recommendation recommendation-${r.severity === "warning" ? "warning" : "info"}`,
      role: "status",
      dataset: { test: "recommendation", id: r.id, acknowledged: r.acknowledged_by ? "yes" : "no" },
    },
    badge(r.severity, r.severity),
    h("span", { class: "recommendation-text", dataset: { test: "recommendation-text" } }, r.text),
    acknowledged,
    h(
      "span",
      { class: "recommendation-buttons" },
      act,
      r.acknowledged_by ? null : actionButton("Acknowledge", mark("acknowledge"), { class: "small", dataset: { test: "recommendation-acknowledge" } }),
      actionButton("Dismiss for 7 days", mark("dismiss"), { class: "small", dataset: { test: "recommendation-dismiss" } }),
    ),
    status,
  );
}

// --- Backups ---------------------------------------------------------------------------------

export async function backupsPage(ctx) {
  const [targets, backups] = await Promise.all([api("GET", "/api/v1/backup-targets"), api("GET", "/api/v1/backups")]);
  if (!ctx.alive()) return;
  const admin = can("admin");
  const messages = h("div", { id: "backup-messages" });
  const progressSlot = h("div", { id: "backup-progress-slot" });
  const listSlot = h("div", { id: "backup-list" });
  const showList = (all) => replace(listSlot, backupTable(all));
  showList(backups);

  // The backup started from this page, and whether the list has one still running.
  let watched = null;
  let running = backups.some((b) => b.state === "running");
  let busy = false;
  ctx.every(1000, async () => {
    if (busy || (!watched && !running)) return;
    busy = true;
    try {
      if (watched) {
        const record = await followed(watched);
        if (!ctx.alive()) return;
        if (record) {
          replace(progressSlot, backupProgress(record));
          if (record.state !== "running") {
            watched = null;
            refreshRecommendations();
          }
        }
      }
      const all = await api("GET", "/api/v1/backups");
      if (!ctx.alive()) return;
      showList(all);
      running = all.some((b) => b.state === "running");
    } catch (e) {
      if (ctx.alive()) replace(messages, notice("error", `Progress could not be read: ${e.message}`));
    } finally {
      busy = false;
    }
  });

  let form = null;
  if (admin && targets.length > 0) {
    const target = h("select", { id: "backup-target", name: "target" }, targetOptions(targets, targets[0].name));
    const start = h("button", { type: "submit", id: "backup-start", class: "primary" }, "Back up now");
    form = h(
      "form",
      { class: "inline-form", id: "backup-form" },
      h("label", {}, "Target", target),
      start,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (start.disabled) return;
      start.disabled = true;
      replace(messages);
      try {
        const answer = await api("POST", "/api/v1/backups", { target: target.value });
        if (!ctx.alive()) return;
        watched = answer.id;
        running = true;
        replace(progressSlot, backupProgress({ id: answer.id, target: target.value, state: "running", stage: "starting", progress: 0 }));
      } catch (e) {
        replace(messages, notice("error", `The backup did not start: ${e.message}`));
      } finally {
        start.disabled = false;
      }
    });
  }

  replace(
    ctx.main,
    h("h1", {}, "Backups"),
    h(
      "p",
      { class: "muted" },
      "A backup is a consistent copy of the whole store, written by the node that answers to one of its targets, then read back and checked. Only a verified backup counts; each target keeps its newest ones.",
    ),
    section(
      "Targets",
      { id: "backup-targets-panel" },
      targets.length === 0
        ? notice("info", "No backup target is configured on this node: add a [[backup_targets]] entry to its configuration file (see docs/configuration.md) and restart it.", { id: "backup-no-target" })
        : table(
            [
              { title: "Name", cell: (t) => h("strong", {}, t.name) },
              { title: "Location", cell: (t) => h("code", {}, t.location), class: "wrap" },
              { title: "Backups kept", cell: (t) => text(t.keep), class: "num" },
            ],
            targets,
            { id: "backup-targets", rowAttrs: (t) => ({ dataset: { test: "target-row", name: t.name } }) },
          ),
      form,
    ),
    messages,
    progressSlot,
    section("Backups, newest first", {}, listSlot),
  );
}

/** The record of backup `id`, or null while this node does not know it yet. */
async function followed(id) {
  try {
    return await api("GET", `/api/v1/backups/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

/** The live view of the backup started from the page. */
function backupProgress(record) {
  const size = record.total_bytes ? `${bytes(record.done_bytes)} of ${bytes(record.total_bytes)}` : null;
  const words = {
    running: `Stage: ${record.stage ?? "starting"}${size ? `, ${size}` : ""}.`,
    verified: `Written, read back and verified${record.total_bytes ? `: ${bytes(record.total_bytes)}` : ""}.`,
    failed: "The backup failed; nothing was kept from it.",
  };
  return h(
    "section",
    { class: "panel", id: "backup-progress", dataset: { id: record.id, state: record.state } },
    h(
      "div",
      { class: "panel-head" },
      h("h2", {}, `Backup ${record.id}`),
      badge(record.state, record.state, { id: "backup-progress-state" }),
    ),
    progressBar(record, { id: "backup-progress-bar" }),
    h("p", { class: "muted", id: "backup-progress-stage" }, words[record.state] ?? record.stage ?? ""),
    record.error ? notice("error", record.error, { id: "backup-progress-error" }) : null,
  );
}

function backupTable(backups) {
  return h(
    "div",
    { class: "scroll" },
    table(
      [
        { title: "Started (UTC)", cell: (b) => time(b.started_at), class: "nowrap" },
        { title: "ID", cell: (b) => h("code", {}, b.id), class: "nowrap" },
        { title: "Target", cell: (b) => b.target },
        { title: "Node", cell: (b) => text(b.node_id), class: "num" },
        { title: "Requested by", cell: (b) => b.requested_by },
        {
          title: "State",
          cell: (b) => (b.state === "running" ? [badge(b.state, b.state), " ", h("span", { class: "muted" }, text(b.stage))] : badge(b.state, b.state)),
          class: "nowrap",
          test: "backup-state",
        },
        { title: "Size", cell: (b) => (b.state === "running" ? `${bytes(b.done_bytes)} of ${bytes(b.total_bytes)}` : bytes(b.total_bytes)), class: "num", test: "backup-size" },
        { title: "Progress", cell: (b) => progressBar(b), test: "backup-progress" },
        { title: "Applied index", cell: (b) => text(b.applied_index), class: "num" },
        { title: "Contents", cell: (b) => counts(b), class: "wrap" },
        { title: "Finished (UTC)", cell: (b) => time(b.finished_at), class: "nowrap" },
        { title: "Error", cell: (b) => (b.error ? h("span", { class: "error-text" }, b.error) : ""), class: "wrap" },
      ],
      backups,
      {
        id: "backup-table",
        empty: "No backup yet.",
        rowAttrs: (b) => ({ dataset: { test: "backup-row", id: b.id, state: b.state } }),
      },
    ),
  );
}

// --- Purges ----------------------------------------------------------------------------------

/** What a recommendation proposes: every night, after a verified backup. */
function recommendedSchedule(schedules, targets) {
  const taken = new Set(schedules.map((s) => s.name));
  let name = "nightly";
  for (let n = 2; taken.has(name); n++) name = `nightly-${n}`;
  return {
    name,
    enabled: true,
    cron: "30 2 * * *",
    closed_days: 90,
    alert_days: 30,
    backup_first: true,
    target: targets[0]?.name,
  };
}

export async function purgesPage(ctx) {
  const [schedules, runs, targets] = await Promise.all([
    api("GET", "/api/v1/purge-schedules"),
    api("GET", "/api/v1/purges"),
    api("GET", "/api/v1/backup-targets"),
  ]);
  if (!ctx.alive()) return;
  const admin = can("admin");
  const editorSlot = h("div", { id: "schedule-editor-slot" });
  const runsSlot = h("div", { id: "purge-runs" });
  const purgeMessages = h("div", { id: "purge-messages" });
  const reload = () => ctx.navigate("/purges");

  function edit(schedule, existing, hint) {
    replace(
      editorSlot,
      scheduleForm({ schedule, existing, targets, hint, saved: reload, close: () => replace(editorSlot) }),
    );
    editorSlot.scrollIntoView({ block: "nearest" });
  }

  // Runs refresh every second while one of them is running, and while a purge started here
  // has not shown up yet (the server records it just after answering), for at most 30 s.
  const showRuns = (all) => replace(runsSlot, runTable(all));
  showRuns(runs);
  let running = runs.some((r) => r.state === "running");
  let awaited = null;
  let busy = false;
  const refreshRuns = async () => {
    if (busy) return;
    busy = true;
    try {
      const all = await api("GET", "/api/v1/purges");
      if (!ctx.alive()) return;
      showRuns(all);
      running = all.some((r) => r.state === "running");
      if (awaited && all.some((r) => r.id === awaited.id)) awaited = null;
      if (awaited && Date.now() > awaited.until) {
        replace(purgeMessages, notice("error", `Purge ${awaited.id} was accepted but has not started; the node's log says why.`));
        awaited = null;
      }
    } catch (e) {
      if (ctx.alive()) replace(purgeMessages, notice("error", `The runs could not be read: ${e.message}`));
    } finally {
      busy = false;
    }
  };
  ctx.every(1000, () => {
    if (running || awaited) refreshRuns();
  });

  const scheduleTable = table(
    [
      { title: "Name", cell: (s) => h("strong", {}, s.name) },
      { title: "Enabled", cell: (s) => (s.enabled ? badge("enabled", "ok") : badge("disabled", "disabled")) },
      { title: "When (cron, UTC)", cell: (s) => h("code", {}, s.cron), class: "nowrap" },
      { title: "Incidents closed over", cell: (s) => `${s.closed_days} days`, class: "num" },
      { title: "Alerts of no incident over", cell: (s) => `${s.alert_days} days`, class: "num" },
      { title: "Back up first", cell: (s) => (s.backup_first ? "yes" : badge("no", "failed")) },
      { title: "Target", cell: (s) => text(s.target) },
      {
        title: "",
        cell: (s) =>
          admin
            ? h("button", { type: "button", class: "small", dataset: { test: "schedule-edit", name: s.name }, on: { click: () => edit(s, true) } }, "Edit")
            : "",
      },
    ],
    schedules,
    {
      id: "schedule-table",
      empty: "No purge is scheduled: everything is kept until someone purges it.",
      rowAttrs: (s) => ({ dataset: { test: "schedule-row", name: s.name } }),
    },
  );

  replace(
    ctx.main,
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Purges"),
      admin
        ? h("button", { type: "button", id: "schedule-new", on: { click: () => edit(recommendedSchedule(schedules, targets), false) } }, "New schedule")
        : null,
    ),
    h(
      "p",
      { class: "muted" },
      "A purge removes for good the incidents closed for longer than a number of days, with their alerts and jobs, and the alerts of no incident older than another. Unless told otherwise it first takes a verified backup, and purges nothing if that fails.",
    ),
    section("Schedules", { id: "schedules-panel" }, h("div", { class: "scroll" }, scheduleTable)),
    editorSlot,
    admin
      ? purgeNowForm({
          targets,
          messages: purgeMessages,
          started: (id) => {
            awaited = { id, until: Date.now() + 30_000 };
            refreshRuns();
          },
        })
      : null,
    purgeMessages,
    section("Runs, newest first", {}, runsSlot),
  );

  // A link or a recommendation can open the form: `?schedule=new`, a recommendation's
  // action, or the name of a schedule to edit.
  const wanted = ctx.query.schedule;
  if (admin && wanted) {
    const existing = schedules.find((s) => s.name === wanted);
    if (existing) {
      edit(existing, true);
    } else {
      const hint = wanted === "schedule_backup" || wanted === "schedule_purge"
        ? "Recommended: every night at 02:30 UTC, a verified backup, then incidents closed over 90 days and alerts of no incident over 30 days are removed. Change what you like and save."
        : null;
      edit(recommendedSchedule(schedules, targets), false, hint);
    }
  }
}

/** The form that adds or changes a purge schedule. */
function scheduleForm({ schedule, existing, targets, hint, saved, close }) {
  const name = h("input", { id: "schedule-name", name: "name", value: schedule.name ?? "", required: true, readonly: existing, autocomplete: "off" });
  const enabled = h("input", { type: "checkbox", id: "schedule-enabled", checked: schedule.enabled !== false });
  const cron = h("input", { id: "schedule-cron", name: "cron", class: "code", value: schedule.cron ?? "", required: true, spellcheck: "false", autocomplete: "off" });
  const closed = h("input", { id: "schedule-closed-days", type: "number", min: 0, value: text(schedule.closed_days) });
  const alerts = h("input", { id: "schedule-alert-days", type: "number", min: 0, value: text(schedule.alert_days) });
  const backupFirst = h("input", { type: "checkbox", id: "schedule-backup-first", checked: schedule.backup_first !== false });
  const target = h("select", { id: "schedule-target", name: "target" }, targetOptions(targets, schedule.target, { none: true }));
  const inputs = { name, cron, closed_days: closed, alert_days: alerts, backup_first: backupFirst, target };
  const status = h("div", { id: "schedule-status" });
  const say = (kind, message) => replace(status, notice(kind, message));

  const save = h("button", { type: "submit", class: "primary", id: "schedule-save" }, "Save");
  const form = h(
    "form",
    { class: "panel", id: "schedule-form", dataset: { existing: existing ? "yes" : "no" } },
    h("h2", {}, existing ? `Edit purge schedule ${schedule.name}` : "New purge schedule"),
    hint ? notice("info", hint, { id: "schedule-hint" }) : null,
    h(
      "div",
      { class: "form-grid" },
      h("label", {}, "Name", name),
      h("label", { class: "wide" }, "When: minute hour day month weekday, UTC", cron),
      h("label", {}, "Incidents closed over (days)", closed),
      h("label", {}, "Alerts of no incident over (days)", alerts),
      h("label", {}, "Backup target", target),
    ),
    h(
      "div",
      { class: "actions" },
      h("label", { class: "check" }, backupFirst, "Back up first, and purge only after a verified backup"),
      h("label", { class: "check" }, enabled, "Enabled"),
    ),
    h(
      "div",
      { class: "actions" },
      save,
      existing
        ? confirmButton("Delete", `Delete the schedule ${schedule.name}? Runs already made stay listed.`, "Yes, delete", async () => {
            try {
              await api("DELETE", `/api/v1/purge-schedules/${encodeURIComponent(schedule.name)}`);
            } catch (e) {
              say("error", `Not deleted: ${e.message}`);
              return;
            }
            saved();
          }, { class: "danger", id: "schedule-delete" })
        : null,
      h("button", { type: "button", id: "schedule-cancel", on: { click: close } }, "Cancel"),
    ),
    status,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (save.disabled) return;
    let body;
    try {
      body = {
        name: name.value.trim(),
        enabled: enabled.checked,
        cron: cron.value.trim(),
        closed_days: days(closed, "closed_days"),
        alert_days: days(alerts, "alert_days"),
        backup_first: backupFirst.checked,
      };
    } catch (e) {
      markFields(inputs, e.message);
      say("error", e.message);
      return;
    }
    if (target.value) body.target = target.value;
    save.disabled = true;
    try {
      await api("PUT", `/api/v1/purge-schedules/${encodeURIComponent(body.name)}`, body);
    } catch (e) {
      markFields(inputs, e.message);
      say("error", `Not saved: ${e.message}`);
      return;
    } finally {
      save.disabled = false;
    }
    saved();
  });
  return form;
}

/** An administrator's form to purge at once, after a confirmation. */
function purgeNowForm({ targets, messages, started }) {
  const closed = h("input", { id: "purge-closed-days", type: "number", min: 0, value: "90" });
  const alerts = h("input", { id: "purge-alert-days", type: "number", min: 0, value: "30" });
  const backupFirst = h("input", { type: "checkbox", id: "purge-backup-first", checked: true });
  const target = h("select", { id: "purge-target" }, targetOptions(targets, targets[0]?.name, { none: true }));
  const inputs = { closed_days: closed, alert_days: alerts, backup_first: backupFirst, target };

  const question = () => {
    const what = `Remove for good every incident closed over ${closed.value} days with its alerts and jobs, and every alert of no incident older than ${alerts.value} days`;
    const backup = backupFirst.checked
      ? `, after a verified backup to ${target.value || "(no target)"}?`
      : ", without a backup first?";
    return what + backup;
  };
  const run = async () => {
    let body;
    try {
      body = { closed_days: days(closed, "closed_days"), alert_days: days(alerts, "alert_days"), backup_first: backupFirst.checked };
    } catch (e) {
      markFields(inputs, e.message);
      replace(messages, notice("error", e.message));
      return;
    }
    if (target.value) body.target = target.value;
    try {
      const answer = await api("POST", "/api/v1/purges", body);
      markFields(inputs, "");
      replace(messages, notice("ok", `Purge ${answer.id} started; it shows below.`, { id: "purge-started", dataset: { id: answer.id } }));
      started(answer.id);
    } catch (e) {
      markFields(inputs, e.message);
      replace(messages, notice("error", `The purge did not start: ${e.message}`));
    }
  };
  return section(
    "Purge now",
    { id: "purge-form" },
    h(
      "div",
      { class: "inline-form" },
      h("label", {}, "Incidents closed over (days)", closed),
      h("label", {}, "Alerts of no incident over (days)", alerts),
      h("label", {}, "Backup target", target),
      h("label", { class: "check" }, backupFirst, "Back up first"),
    ),
    confirmButton("Purge now…", question, "Yes, purge", run, { class: "danger", id: "purge-start" }),
  );
}

function runTable(runs) {
  const removed = (r) => {
    const n = r.removed ?? {};
    return `${n.incidents ?? 0} incidents, ${n.alerts ?? 0} alerts, ${n.jobs ?? 0} jobs`;
  };
  return h(
    "div",
    { class: "scroll" },
    table(
      [
        { title: "Started (UTC)", cell: (r) => time(r.started_at), class: "nowrap" },
        { title: "ID", cell: (r) => h("code", {}, r.id), class: "nowrap" },
        { title: "Schedule", cell: (r) => (r.schedule ? r.schedule : h("span", { class: "muted" }, "by hand")) },
        { title: "Requested by", cell: (r) => r.requested_by },
        { title: "State", cell: (r) => badge(r.state, r.state), test: "purge-state" },
        { title: "Closed before (UTC)", cell: (r) => time(r.closed_before), class: "nowrap" },
        { title: "Alerts before (UTC)", cell: (r) => time(r.alerts_before), class: "nowrap" },
        { title: "Backup", cell: (r) => (r.backup_id ? h("code", {}, r.backup_id) : h("span", { class: "muted" }, "none")), class: "nowrap" },
        { title: "Removed", cell: removed, test: "purge-removed" },
        { title: "Finished (UTC)", cell: (r) => time(r.finished_at), class: "nowrap" },
        { title: "Error", cell: (r) => (r.error ? h("span", { class: "error-text" }, r.error) : ""), class: "wrap" },
      ],
      runs,
      {
        id: "purge-table",
        empty: "No purge has run.",
        rowAttrs: (r) => ({ dataset: { test: "purge-row", id: r.id, state: r.state } }),
      },
    ),
  );
}

// --- Upgrading this node ---------------------------------------------------------------------

/** Sends `file` as the body of a POST, calling `onProgress(percent)` as it goes up. */
function uploadFile(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    request.setRequestHeader("Content-Type", "application/octet-stream");
    request.setRequestHeader("Accept", "application/json");
    if (session.current) request.setRequestHeader("X-CSRF-Token", session.current.csrf_token);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(Math.round((100 * event.loaded) / event.total));
    });
    request.addEventListener("load", () => {
      let data = null;
      try {
        data = JSON.parse(request.responseText);
      } catch {
        data = null;
      }
      if (request.status >= 200 && request.status < 300) resolve(data);
      else reject(new Error(data?.error ?? `${request.status} ${request.statusText}`));
    });
    request.addEventListener("error", () => reject(new Error("the server cannot be reached")));
    request.send(file);
  });
}

/** The states in which an upload is still being handled (the API's `InboxState::busy`). */
const UPGRADE_BUSY = ["queued", "checking", "installing"];

/** What an upload's state means, as a badge. */
const UPGRADE_STATES = {
  queued: ["queued", "info"],
  checking: ["checking", "info"],
  refused: ["refused", "error"],
  installing: ["installing", "info"],
  rebooting: ["rebooting into it", "info"],
  failed: ["failed", "error"],
  confirmed: ["confirmed", "ok"],
  fellback: ["fell back", "error"],
};

/**
 * The Cluster page's section for administrators of an appliance: the release this node runs,
 * the last uploaded upgrade and how far it got, and a form to upload a signed IMG. The node
 * goes down while root writes the other slot and reboots, so the section keeps asking.
 */
export async function upgradeSection(ctx) {
  if (!can("admin")) return null;
  let status;
  try {
    status = await api("GET", "/api/v1/appliance/upgrade");
  } catch (e) {
    // Not an appliance: upgrades come from the package manager; nothing to show.
    if (e.status === 404) return null;
    return section("Upgrade this node", { id: "upgrade" }, notice("error", `Upgrade status unavailable: ${e.message}`));
  }
  const holder = h("div", { id: "upgrade-status" });
  const show = (s) => {
    const last = s.last;
    const [label, kind] = last ? UPGRADE_STATES[last.state] ?? [last.state, "info"] : [];
    replace(
      holder,
      facts([
        ["Running", s.running ? `${s.running.version} (data format ${s.running.data_format})` : "unknown"],
        ["Last upload", last ? h("span", {}, badge(label, kind, { dataset: { test: "upgrade-state" } }), " ", last.version ?? "") : "none"],
        ["Uploaded by", last?.uploaded_by ?? ""],
        ["At (UTC)", last ? time(new Date(last.at * 1000).toISOString()) : ""],
      ]),
      last ? h("p", { class: "wrap", dataset: { test: "upgrade-message" } }, last.message) : null,
    );
  };
  show(status);

  const file = h("input", { type: "file", id: "upgrade-file", accept: ".img" });
  const bar = h("progress", { class: "bar", max: 100, value: 0, hidden: true, "aria-label": "upload progress" });
  const messages = h("div", {});
  const poll = () => {
    const timer = setInterval(async () => {
      if (!ctx.alive()) return clearInterval(timer);
      try {
        const next = await api("GET", "/api/v1/appliance/upgrade");
        show(next);
        if (next.last && !UPGRADE_BUSY.includes(next.last.state)) clearInterval(timer);
      } catch {
        // The node is down while the slot is written and the machine reboots.
        replace(messages, notice("info", "The node is not answering: it is writing the new release or rebooting."));
      }
    }, 2000);
  };
  const upload = actionButton("Upload and apply", async () => {
    const chosen = file.files?.[0];
    if (!chosen) {
      replace(messages, notice("error", "Choose an .img file first."));
      return;
    }
    bar.hidden = false;
    try {
      const queued = await uploadFile("/api/v1/appliance/upgrade", chosen, (p) => (bar.value = p));
      show({ ...status, last: queued });
      replace(messages, notice("ok", "Uploaded. The appliance checks the image, then writes it and reboots this node to try it once."));
      poll();
    } catch (e) {
      replace(messages, notice("error", `Upload refused: ${e.message}`));
    } finally {
      bar.hidden = true;
    }
  }, { class: "primary", id: "upgrade-upload" });
  if (status.last && UPGRADE_BUSY.includes(status.last.state)) poll();
  return section(
    "Upgrade this node",
    { id: "upgrade" },
    h("p", { class: "muted" }, "Upload a signed release image (.img). Upgrade one node at a time, and the next only once this one says confirmed."),
    holder,
    h("div", { class: "inline-form" }, file, " ", upload, " ", bar),
    messages,
  );
}
