// Pullback UI: the shell (sign-in, navigation, routing, the recommendations above every page)
// and the small pages: dashboard, cluster and audit log. The pages about incidents, search,
// administration, backups and purges live in their own modules.
//
// Routes are in the URL's fragment (#/incidents/7), so the server serves one page and the
// browser's back button works. Every page renders into <main> from API answers; a page
// left before its answers arrive drops them.

import {
  session, can, api, onSignedOut, h, replace, link, badge, time, table, facts, section, notice,
  parseQuery, buildQuery, text, actionButton, pager, roleLabel, formatTime,
} from "./dom.js";
import { barChart } from "./charts.js";
import { incidentList, incidentPage, alertPage } from "./incidents.js";
import { searchPage } from "./search.js";
import { sourcesPage, conditionsPage, usersPage } from "./admin.js";
import { backupsPage, purgesPage, recommendationsBanner, refreshRecommendations, upgradeSection } from "./maintenance.js";

const NAV = [
  { route: "/dashboard", label: "Dashboard", test: "nav-dashboard" },
  { route: "/incidents", label: "Incidents", test: "nav-incidents" },
  { route: "/search", label: "Search", test: "nav-search" },
  { route: "/sources", label: "Sources", test: "nav-sources" },
  { route: "/conditions", label: "Match conditions", test: "nav-conditions" },
  { route: "/cluster", label: "Cluster", test: "nav-cluster" },
  { route: "/backups", label: "Backups", test: "nav-backups" },
  { route: "/purges", label: "Purges", test: "nav-purges" },
  { route: "/audit", label: "Audit log", test: "nav-audit" },
  { route: "/users", label: "Users", test: "nav-users", role: "admin" },
];

/** Route patterns and their pages; `:id` parts are passed in `params`. */
const ROUTES = [
  ["/dashboard", dashboardPage],
  ["/incidents", incidentList],
  ["/incidents/:id", incidentPage],
  ["/alerts/:id", alertPage],
  ["/search", searchPage],
  ["/sources", sourcesPage],
  ["/conditions", conditionsPage],
  ["/cluster", clusterPage],
  ["/backups", backupsPage],
  ["/purges", purgesPage],
  ["/audit", auditPage],
  ["/users", usersPage],
  ["/password", passwordPage],
];

const root = document.getElementById("root");

/** The page being shown; a newer render makes older ones stale. */
let current = { generation: 0, timers: [] };

function match(path) {
  for (const [pattern, page] of ROUTES) {
    const want = pattern.split("/");
    const got = path.split("/");
    if (want.length !== got.length) continue;
    const params = {};
    let ok = true;
    for (let i = 0; i < want.length; i++) {
      if (want[i].startsWith(":")) params[want[i].slice(1)] = decodeURIComponent(got[i]);
      else if (want[i] !== got[i]) ok = false;
    }
    if (ok) return { page, params };
  }
  return null;
}

function currentRoute() {
  const hash = location.hash.replace(/^#/, "") || "/dashboard";
  const [path, query] = hash.split("?");
  return { path: path.replace(/\/+$/, "") || "/dashboard", query: query ?? "" };
}

/** Goes to a route of the UI. */
export function navigate(route) {
  if (location.hash === `#${route}`) render();
  else location.hash = route;
}

async function render() {
  for (const timer of current.timers) clearInterval(timer);
  const generation = current.generation + 1;
  current = { generation, timers: [] };
  if (!session.current) {
    showSignIn();
    return;
  }
  const { path, query } = currentRoute();
  if (path === "/signin") {
    // Where a failed sign-in with Azure AD lands; signed in, there is nothing to do there.
    navigate("/dashboard");
    return;
  }
  const found = match(path);
  const shell = showShell(path);
  const main = shell.main;
  refreshRecommendations();
  if (!found) {
    replace(main, h("h1", {}, "Not found"), notice("error", `There is no page ${path}.`));
    return;
  }
  const ctx = {
    main,
    params: found.params,
    query: parseQuery(query),
    path,
    /** Whether this page is still the one shown. */
    alive: () => current.generation === generation,
    /** Runs `fn` every `ms` while this page is shown. */
    every(ms, fn) {
      const timer = setInterval(() => {
        if (current.generation === generation) fn();
      }, ms);
      current.timers.push(timer);
      return () => clearInterval(timer);
    },
    navigate,
  };
  replace(main, h("p", { class: "loading" }, "Loading…"));
  try {
    await found.page(ctx);
  } catch (e) {
    if (!ctx.alive()) return;
    if (e.status === 401) return;
    replace(main, h("h1", {}, "Something went wrong"), notice("error", e.message, { id: "page-error" }));
  }
}

let shellElements = null;

/** The header and navigation, kept across pages; answers where pages render. */
function showShell(path) {
  if (!shellElements || !root.contains(shellElements.main)) {
    const userBox = h(
      "div",
      { class: "user" },
      h("span", { id: "session-user", class: "user-name" }, session.current.user),
      badge(roleLabel(session.current.role), session.current.role, { id: "session-role" }),
      // Someone Azure AD signed in has their password there, not here.
      session.current.provider
        ? h("span", { class: "user-provider", id: "session-provider" }, `via ${session.current.provider === "azure ad" ? "Azure AD" : session.current.provider}`)
        : link("/password", "Password", { class: "link-button", id: "password-link" }),
      actionButton("Sign out", signOut, { id: "signout", class: "link-button" }),
    );
    const nav = h(
      "nav",
      { class: "nav", "aria-label": "Pages" },
      h(
        "ul",
        {},
        NAV.filter((n) => !n.role || can(n.role)).map((n) =>
          h("li", {}, link(n.route, n.label, { dataset: { test: n.test, route: n.route } })),
        ),
      ),
    );
    const main = h("main", { id: "main", class: "main" });
    const header = h("header", { class: "topbar" }, h("a", { class: "brand", href: "#/dashboard" }, "Pullback"), userBox);
    const content = h("div", { class: "content" }, recommendationsBanner(navigate), main);
    replace(root, header, h("div", { class: "layout" }, nav, content));
    shellElements = { main, nav };
  }
  for (const a of shellElements.nav.querySelectorAll("a")) {
    const route = a.dataset.route;
    a.classList.toggle("active", path === route || path.startsWith(`${route}/`));
  }
  return shellElements;
}


// --- Sign-in ---------------------------------------------------------------------------------

function showSignIn(message) {
  shellElements = null;
  // Moving around while signed out keeps the form and what was typed into it.
  const shown = document.getElementById("signin-form");
  if (shown && root.contains(shown)) {
    if (message) {
      const error = document.getElementById("signin-error");
      error.textContent = message;
      error.hidden = false;
    }
    return;
  }
  const error = h("p", { id: "signin-error", class: "notice notice-error", role: "alert", hidden: !message }, message ?? "");
  const username = h("input", { id: "signin-username", name: "username", autocomplete: "username", required: true, autofocus: true });
  const password = h("input", { id: "signin-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { id: "signin-submit", type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { id: "signin-form", class: "signin" },
    h("h1", {}, "Pullback"),
    h("p", { class: "muted" }, "Sign in to work incidents."),
    h("label", {}, "User name", username),
    h("label", {}, "Password", password),
    submit,
    error,
    h("div", { id: "signin-providers", class: "signin-providers", hidden: true }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    try {
      session.current = await api("POST", "/api/v1/session", { username: username.value, password: password.value }, { quietUnauthorized: true });
      render();
    } catch (e) {
      error.textContent = e.status === 401 ? "Wrong user name or password." : e.message;
      error.hidden = false;
      password.value = "";
      password.focus();
    } finally {
      submit.disabled = false;
    }
  });
  replace(root, h("div", { class: "signin-page" }, form));
  username.focus();
  showProviders(error);
}

/**
 * Offers the sign-in methods the server has besides passwords (Azure AD), and shows the
 * message of a sign-in with one of them that just failed: the server keeps it for this page
 * in a cookie of its own, so a link cannot put words on it.
 */
async function showProviders(error) {
  let methods;
  try {
    methods = await api("GET", "/api/v1/session/methods", undefined, { quietUnauthorized: true });
  } catch {
    return;
  }
  const box = document.getElementById("signin-providers");
  if (!box || !methods) return;
  if (methods.notice) {
    error.textContent = methods.notice;
    error.hidden = false;
  }
  const providers = methods.providers ?? [];
  if (providers.length === 0) return;
  const { path, query } = currentRoute();
  const back = path === "/signin" ? "/dashboard" : query ? `${path}?${query}` : path;
  replace(
    box,
    h("p", { class: "muted signin-or" }, "or"),
    providers.map((p) =>
      h("a", {
        class: "button signin-provider",
        id: `signin-${p.id.replace(/_/g, "-")}`,
        href: `${p.login_url}?return_to=${encodeURIComponent(back)}`,
      }, p.label),
    ),
  );
  box.hidden = false;
}

async function signOut() {
  try {
    await api("DELETE", "/api/v1/session");
  } catch {
    // Signed out either way: the page forgets the session.
  }
  session.current = null;
  render();
}

onSignedOut((message) => {
  if (!session.current) return;
  session.current = null;
  showSignIn(`Your session ended (${message}). Sign in again.`);
});

// --- Dashboard -------------------------------------------------------------------------------

async function dashboardPage(ctx) {
  const days = Number(ctx.query.days) || 30;
  const [stats, open, sources, cluster, backups] = await Promise.all([
    api("GET", `/api/v1/stats?days=${days}`),
    api("GET", "/api/v1/incidents?state=open&limit=200"),
    api("GET", "/api/v1/sources").catch(() => []),
    api("GET", "/api/v1/cluster").catch(() => null),
    api("GET", "/api/v1/backups").catch(() => null),
  ]);
  if (!ctx.alive()) return;
  const series = stats.days ?? [];
  const sum = (key) => series.reduce((n, d) => n + (Number(d[key]) || 0), 0);
  const openCount = `${open.items.length}${open.next_cursor != null ? "+" : ""}`;
  const pending = open.items.reduce((n, i) => n + (i.quarantine?.pending ?? 0), 0);
  const failed = open.items.reduce((n, i) => n + (i.quarantine?.failed ?? 0), 0);
  const failing = sources.filter((s) => s.last_error);
  const verified = backups?.find((b) => b.state === "verified");

  const tile = (label, value, test, route) =>
    h(
      "div",
      { class: "tile", dataset: { test } },
      h("div", { class: "tile-value" }, route ? link(route, String(value)) : String(value)),
      h("div", { class: "tile-label" }, label),
    );
  const ranges = h(
    "div",
    { class: "segmented" },
    [7, 30, 90].map((n) => link(`/dashboard?days=${n}`, `${n} days`, { class: n === days ? "active" : "" })),
  );
  replace(
    ctx.main,
    h("div", { class: "page-head" }, h("h1", {}, "Dashboard"), ranges),
    h(
      "div",
      { class: "tiles", id: "dashboard-counts" },
      tile("open incidents", openCount, "count-open-incidents", "/incidents?state=open"),
      tile(`alerts, last ${days} days`, sum("alerts"), "count-alerts"),
      tile(`messages quarantined, last ${days} days`, sum("quarantined"), "count-quarantined"),
      tile(`messages restored, last ${days} days`, sum("restored"), "count-restored"),
      tile("recipients pending in open incidents", pending, "count-pending"),
      tile("failed in open incidents", failed, "count-failed"),
    ),
    h(
      "div",
      { class: "columns" },
      section(
        "Alerts per day",
        { id: "chart-alerts" },
        barChart(series, [{ key: "alerts", label: "Alerts", class: "series-alerts" }], { label: "alerts per day" }),
      ),
      section(
        "Quarantine outcomes per day",
        { id: "chart-quarantines" },
        barChart(
          series,
          [
            { key: "quarantined", label: "Quarantined", class: "series-quarantined" },
            { key: "restored", label: "Restored", class: "series-restored" },
            { key: "failed", label: "Failed", class: "series-failed" },
          ],
          { label: "messages quarantined, restored and failed per day" },
        ),
      ),
    ),
    h(
      "div",
      { class: "columns" },
      section(
        "Newest open incidents",
        {},
        table(
          [
            { title: "ID", cell: (i) => link(`/incidents/${i.id}`, `#${i.id}`), class: "num" },
            { title: "Title", cell: (i) => link(`/incidents/${i.id}`, i.title) },
            { title: "Created (UTC)", cell: (i) => time(i.created_at), class: "nowrap" },
            { title: "Alerts", cell: (i) => String(i.alert_count), class: "num" },
          ],
          open.items.slice(0, 8),
          { empty: "No open incident." },
        ),
      ),
      section(
        "Health",
        {},
        facts([
          ["Sources", `${sources.length} (${failing.length} with an error)`],
          ["Failing", failing.length ? failing.map((s) => s.name) : null],
          ["Leader", cluster ? (cluster.leader != null ? `node ${cluster.leader}` : "none") : null],
          ["Term", cluster?.term],
          ["Members", cluster ? cluster.members.length : null],
          ["Last verified backup", backups ? (verified ? link("/backups", `${formatTime(verified.finished_at ?? verified.started_at)} UTC`) : link("/backups", "none yet")) : null],
        ]),
      ),
    ),
  );
}

// --- Cluster ---------------------------------------------------------------------------------

async function clusterPage(ctx) {
  const [cluster, status, upgrade] = await Promise.all([api("GET", "/api/v1/cluster"), api("GET", "/api/v1/status"), upgradeSection(ctx)]);
  if (!ctx.alive()) return;
  replace(
    ctx.main,
    h("h1", {}, "Cluster"),
    cluster.from_leader ? null : notice("error", "These figures come from a follower that cannot reach the leader; lag is unknown."),
    section(
      "Raft",
      { id: "cluster-summary" },
      facts([
        ["Leader", cluster.leader != null ? `node ${cluster.leader}` : "none"],
        ["Term", cluster.term],
        ["Last log index", cluster.last_log_index],
        ["Applied", cluster.applied],
        ["Command level", cluster.level],
        ["Answered by", `node ${cluster.answered_by}`],
      ]),
    ),
    finalizeSection(cluster),
    section(
      "Members",
      {},
      table(
        [
          { title: "Node", cell: (m) => String(m.id), class: "num" },
          { title: "Role", cell: (m) => badge(m.role, m.role) },
          { title: "Raft address", cell: (m) => m.raft },
          { title: "API address", cell: (m) => m.api },
          { title: "Matched index", cell: (m) => text(m.matched), class: "num" },
          { title: "Lag", cell: (m) => text(m.lag), class: "num" },
          { title: "Release (level)", cell: (m) => (m.release ? `${m.release.version} (${m.release.level})` : "not reported") },
        ],
        cluster.members,
        { id: "cluster-members" },
      ),
    ),
    section(
      "This node",
      { id: "node-status" },
      facts([
        ["Node", status.id],
        ["Raft state", status.state],
        ["Leader", status.leader],
        ["Term", status.term],
        ["Last log index", status.last_log_index],
        ["Applied", status.last_applied],
        ["Voters", status.members],
        ["Leader work", status.leader_work ? `term ${status.leader_work.term} since ${status.leader_work.started_at}` : "none (not leading)"],
      ]),
    ),
    upgrade,
  );
}

// After every node runs a newer release, an administrator raises the cluster's command level
// so that the commands new in it may be used. Shown only when that is possible.
function finalizeSection(cluster) {
  if (!can("admin") || !cluster.members.every((m) => m.release)) return null;
  const levels = new Set(cluster.members.map((m) => m.release.level));
  const [common] = levels;
  if (levels.size !== 1 || !(common > cluster.level)) return null;
  const messages = h("div", {});
  const button = actionButton("Finalize the upgrade", async () => {
    try {
      const answer = await api("POST", "/api/v1/cluster/finalize");
      replace(messages, notice("ok", `The cluster now runs at command level ${answer.level}.`));
      button.hidden = true;
    } catch (e) {
      replace(messages, notice("error", `Not finalized: ${e.message}`));
    }
  }, { class: "primary", id: "finalize-upgrade" });
  return section(
    "Finish the upgrade",
    { id: "finalize" },
    h("p", { class: "wrap" },
      `Every node runs a release of command level ${common}; the cluster still runs at level ${cluster.level}, `
      + "so what the new release added stays off and a node may still go back to the previous release. "
      + "Finalizing turns it on; the previous release then no longer starts on this cluster."),
    button,
    messages,
  );
}

// --- Audit log -------------------------------------------------------------------------------

async function auditPage(ctx) {
  const query = { cursor: ctx.query.cursor, limit: 100 };
  const page = await api("GET", `/api/v1/audit?${buildQuery(query)}`);
  if (!ctx.alive()) return;
  replace(
    ctx.main,
    h("h1", {}, "Audit log"),
    h("p", { class: "muted" }, "Every change a person or an API key made, and every sign-in, newest first."),
    table(
      [
        { title: "At (UTC)", cell: (e) => time(e.at), class: "nowrap" },
        { title: "By", cell: (e) => e.by },
        { title: "Action", cell: (e) => h("code", {}, e.action) },
        { title: "Detail", cell: (e) => text(e.detail), class: "wrap" },
        { title: "Outcome", cell: (e) => outcome(e.outcome), class: "wrap" },
      ],
      page.items,
      { id: "audit-table", empty: "The audit log is empty." },
    ),
    pager("/audit", ctx.query, page.next_cursor),
  );
}

/** `ok`, or `refused: why` as a badge and the reason. */
function outcome(value) {
  const text = String(value ?? "");
  if (text === "ok") return badge("ok", "ok");
  const why = text.replace(/^refused:\s*/, "");
  return h("span", {}, badge("refused", "refused"), " ", why);
}

// --- Own password ------------------------------------------------------------------------------

async function passwordPage(ctx) {
  const current = h("input", { id: "password-current", type: "password", autocomplete: "current-password", required: true });
  const fresh = h("input", { id: "password-new", type: "password", autocomplete: "new-password", required: true, minlength: 12 });
  const again = h("input", { id: "password-again", type: "password", autocomplete: "new-password", required: true });
  const messages = h("div", { id: "password-messages" });
  const submit = h("button", { type: "submit", class: "primary", id: "password-submit" }, "Change password");
  const form = h(
    "form",
    { class: "panel stacked-form" },
    h("label", {}, "Current password", current),
    h("label", {}, "New password (at least 12 characters)", fresh),
    h("label", {}, "New password again", again),
    submit,
    messages,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (fresh.value !== again.value) {
      replace(messages, notice("error", "The two new passwords differ."));
      return;
    }
    submit.disabled = true;
    try {
      await api("PUT", "/api/v1/session/password", { current: current.value, new: fresh.value });
      form.reset();
      replace(messages, notice("ok", "Password changed. Your other sessions have ended."));
    } catch (e) {
      replace(messages, notice("error", e.message));
    } finally {
      submit.disabled = false;
    }
  });
  replace(ctx.main, h("h1", {}, "Change your password"), form);
}

// --- Start -----------------------------------------------------------------------------------

async function start() {
  try {
    session.current = await api("GET", "/api/v1/session", undefined, { quietUnauthorized: true });
  } catch {
    session.current = null;
  }
  window.addEventListener("hashchange", render);
  render();
}

start();
