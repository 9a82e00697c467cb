// Pullback UI: the pages an administrator changes things on (sources, match conditions,
// users); everyone signed in can read the first two.

import {
  session, can, api, h, replace, badge, time, text, table, section, notice, actionButton, json, roleLabel,
} from "./dom.js";

// --- A JSON editor -----------------------------------------------------------------------------

/**
 * A textarea holding a JSON document, with Save and (for an existing one) Delete. `save`
 * gets the parsed value; errors from it or from parsing show under the editor.
 */
function jsonEditor({ title, value, hint, save, remove, close, idPrefix }) {
  const area = h("textarea", { id: `${idPrefix}-json`, class: "code", rows: 18, spellcheck: "false" });
  area.value = json(value);
  const status = h("div", { id: `${idPrefix}-status` });
  const say = (kind, message) => replace(status, notice(kind, message));
  const saveButton = actionButton("Save", async () => {
    let parsed;
    try {
      parsed = JSON.parse(area.value);
    } catch (e) {
      say("error", `Not valid JSON: ${e.message}`);
      return;
    }
    try {
      await save(parsed);
    } catch (e) {
      say("error", e.message);
    }
  }, { class: "primary", id: `${idPrefix}-save` });
  const deleteButton = remove
    ? actionButton("Delete", async () => {
        try {
          await remove();
        } catch (e) {
          say("error", e.message);
        }
      }, { class: "danger", id: `${idPrefix}-delete` })
    : null;
  return h(
    "section",
    { class: "panel editor", id: `${idPrefix}-editor` },
    h("h2", {}, title),
    hint ? h("p", { class: "muted" }, hint) : null,
    area,
    h("div", { class: "actions" }, saveButton, deleteButton, h("button", { type: "button", on: { click: close } }, "Cancel")),
    status,
  );
}

// --- Sources -----------------------------------------------------------------------------------

/** The definition a PUT takes, rebuilt from what GET shows (secret values stay empty). */
function sourceDefinition(s) {
  const definition = { name: s.name, type: s.type, enabled: s.enabled };
  if (s.script) {
    const { secrets, ...script } = s.script;
    Object.assign(definition, script);
    definition.secrets = (secrets ?? []).map((x) => ({ name: x.name, delivery: x.delivery, value: "" }));
  }
  return definition;
}

const NEW_SOURCE = {
  name: "new-source",
  type: "search_export",
  enabled: true,
};

export async function sourcesPage(ctx) {
  const sources = await api("GET", "/api/v1/sources");
  if (!ctx.alive()) return;
  const editorSlot = h("div", { id: "source-editor-slot" });
  const messages = h("div", { id: "source-messages" });
  const reload = () => ctx.navigate("/sources");

  function edit(definition, existing) {
    replace(
      editorSlot,
      jsonEditor({
        title: existing ? `Edit source ${definition.name}` : "New source",
        value: definition,
        idPrefix: "source",
        hint: "The definition as JSON (see docs/sources.md). A secret with an empty value keeps the stored one. TAP sources are defined in the configuration file.",
        save: async (value) => {
          if (!value.name) throw new Error("the definition needs a name");
          await api("PUT", `/api/v1/sources/${encodeURIComponent(value.name)}`, value);
          reload();
        },
        remove: existing
          ? async () => {
              await api("DELETE", `/api/v1/sources/${encodeURIComponent(definition.name)}`);
              reload();
            }
          : null,
        close: () => replace(editorSlot),
      }),
    );
    editorSlot.scrollIntoView({ block: "nearest" });
  }

  async function newCredential(source) {
    try {
      const answer = await api("POST", `/api/v1/sources/${encodeURIComponent(source.name)}/credential`);
      replace(
        messages,
        h(
          "div",
          { class: "notice notice-ok", id: "source-credential" },
          `New push credential for ${answer.source}, shown only this once: `,
          h("code", { class: "secret" }, answer.credential),
        ),
      );
    } catch (e) {
      replace(messages, notice("error", e.message));
    }
  }

  const admin = can("admin");
  replace(
    ctx.main,
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Sources"),
      admin ? h("button", { type: "button", id: "source-new", on: { click: () => edit(NEW_SOURCE, false) } }, "New source") : null,
    ),
    messages,
    h(
      "div",
      { class: "scroll" },
      table(
        [
          { title: "Name", cell: (s) => h("strong", {}, s.name) },
          { title: "Type", cell: (s) => s.type },
          { title: "State", cell: (s) => sourceState(s), test: "source-state" },
          { title: "Position", cell: (s) => (s.cursor ? time(s.cursor) : text(s.position)), class: "nowrap" },
          { title: "Last run (UTC)", cell: (s) => time(s.last_run), class: "nowrap" },
          { title: "Last success (UTC)", cell: (s) => time(s.last_success), class: "nowrap" },
          { title: "Last error", cell: (s) => (s.last_error ? h("span", { class: "error-text" }, s.last_error) : ""), class: "wrap" },
          { title: "Accepted", cell: (s) => text(s.accepted ?? 0), class: "num" },
          { title: "Duplicates", cell: (s) => text(s.duplicates ?? 0), class: "num" },
          { title: "Rejected", cell: (s) => text(s.rejected ?? 0), class: "num" },
          { title: "Calls, 24 h", cell: (s) => text(s.calls_last_24h ?? 0), class: "num" },
          { title: "Push to", cell: (s) => (s.push_path ? h("code", {}, s.push_path) : "") },
          {
            title: "",
            cell: (s) =>
              admin && s.defined_in === "state"
                ? h(
                    "span",
                    { class: "nowrap" },
                    h("button", { type: "button", class: "small", dataset: { test: "source-edit", name: s.name }, on: { click: () => edit(sourceDefinition(s), true) } }, "Edit"),
                    s.push_path ? [" ", actionButton("New credential", () => newCredential(s), { class: "small" })] : null,
                  )
                : "",
          },
        ],
        sources,
        { id: "source-table", empty: "No source.", rowAttrs: (s) => ({ dataset: { test: "source-row", name: s.name } }) },
      ),
    ),
    editorSlot,
  );
}

function sourceState(s) {
  if (!s.enabled) return badge("disabled", "disabled");
  if (s.last_error) return badge("failing", "failed", { title: s.last_error });
  if (s.last_success) return badge("ok", "ok");
  return badge("waiting", "pending");
}

// --- Match conditions --------------------------------------------------------------------------

const NEW_CONDITION = {
  name: "new-condition",
  enabled: true,
  priority: 100,
  sources: [],
  kinds: ["message_delivered"],
  classifications: ["phish", "malware"],
  threat_statuses: ["active"],
  threat_types: [],
  recipient_domains: [],
  exclude_recipients: [],
  exclude_senders: [],
  responses: ["quarantine"],
  stop: false,
};

export async function conditionsPage(ctx) {
  const conditions = await api("GET", "/api/v1/match-conditions");
  if (!ctx.alive()) return;
  const editorSlot = h("div", { id: "condition-editor-slot" });
  const reload = () => ctx.navigate("/conditions");
  const admin = can("admin");

  function edit(condition, existing) {
    replace(
      editorSlot,
      jsonEditor({
        title: existing ? `Edit match condition ${condition.name}` : "New match condition",
        value: condition,
        idPrefix: "condition",
        hint: "The condition as in the configuration file, as JSON. Empty lists match anything.",
        save: async (value) => {
          if (!value.name) throw new Error("the condition needs a name");
          await api("PUT", `/api/v1/match-conditions/${encodeURIComponent(value.name)}`, value);
          reload();
        },
        remove: existing
          ? async () => {
              await api("DELETE", `/api/v1/match-conditions/${encodeURIComponent(condition.name)}`);
              reload();
            }
          : null,
        close: () => replace(editorSlot),
      }),
    );
    editorSlot.scrollIntoView({ block: "nearest" });
  }

  const list = (values) => (values?.length ? text(values) : h("span", { class: "muted" }, "any"));
  replace(
    ctx.main,
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Match conditions"),
      admin ? h("button", { type: "button", id: "condition-new", on: { click: () => edit(NEW_CONDITION, false) } }, "New condition") : null,
    ),
    h("p", { class: "muted" }, "Evaluated by priority, lowest first; a condition that matches decides what happens to the alert."),
    h(
      "div",
      { class: "scroll" },
      table(
        [
          { title: "Priority", cell: (c) => text(c.priority ?? 0), class: "num" },
          { title: "Name", cell: (c) => h("strong", {}, c.name) },
          { title: "Enabled", cell: (c) => (c.enabled ? badge("enabled", "ok") : badge("disabled", "disabled")) },
          { title: "Sources", cell: (c) => list(c.sources) },
          { title: "Kinds", cell: (c) => list(c.kinds) },
          { title: "Classifications", cell: (c) => list(c.classifications) },
          { title: "Threat statuses", cell: (c) => list(c.threat_statuses) },
          { title: "Recipient domains", cell: (c) => list(c.recipient_domains) },
          { title: "Excluded", cell: (c) => text([...(c.exclude_recipients ?? []), ...(c.exclude_senders ?? [])]), class: "wrap" },
          { title: "Responses", cell: (c) => text(c.responses) },
          { title: "Stop", cell: (c) => (c.stop ? "yes" : "") },
          {
            title: "",
            cell: (c) =>
              admin
                ? h("button", { type: "button", class: "small", dataset: { test: "condition-edit", name: c.name }, on: { click: () => edit(c, true) } }, "Edit")
                : "",
          },
        ],
        [...conditions].sort((a, b) => (a.priority ?? 0) - (b.priority ?? 0)),
        { id: "condition-table", empty: "No match condition: alerts are recorded, nothing is quarantined." },
      ),
    ),
    editorSlot,
  );
}

// --- Users -------------------------------------------------------------------------------------

const ROLES = ["read_only", "analyst", "admin"];

function roleSelect(value, attrs = {}) {
  return h("select", attrs, ROLES.map((r) => h("option", { value: r, selected: r === value }, roleLabel(r))));
}

export async function usersPage(ctx) {
  if (!can("admin")) {
    replace(ctx.main, h("h1", {}, "Users"), notice("error", "Only administrators manage users."));
    return;
  }
  const users = await api("GET", "/api/v1/users");
  if (!ctx.alive()) return;
  const messages = h("div", { id: "user-messages" });
  const say = (kind, message) => replace(messages, notice(kind, message));
  const reload = () => ctx.navigate("/users");

  const name = h("input", { id: "user-name", placeholder: "name", autocomplete: "off", required: true });
  const role = roleSelect("analyst", { id: "user-role" });
  const password = h("input", { id: "user-password", type: "password", placeholder: "password", autocomplete: "new-password", required: true });
  const create = h("form", { class: "inline-form", id: "user-create-form" },
    h("span", { class: "label" }, "New user"), name, role, password,
    h("button", { type: "submit", id: "user-create", class: "primary" }, "Create"));
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("PUT", `/api/v1/users/${encodeURIComponent(name.value.trim())}`, { role: role.value, password: password.value });
      reload();
    } catch (e) {
      say("error", `User not created: ${e.message}`);
    }
  });

  const row = (u) => {
    const userRole = roleSelect(u.role, { dataset: { test: "user-role" } });
    const disabled = h("input", { type: "checkbox", checked: !!u.disabled, dataset: { test: "user-disabled" } });
    const newPassword = h("input", { type: "password", placeholder: "new password (optional)", autocomplete: "new-password", dataset: { test: "user-password" } });
    const self = session.current?.user === u.name;
    return {
      u,
      role: userRole,
      disabled: h("label", { class: "check" }, disabled, "disabled"),
      password: newPassword,
      actions: h(
        "span",
        { class: "nowrap" },
        actionButton("Save", async () => {
          const body = { role: userRole.value, disabled: disabled.checked };
          if (newPassword.value) body.password = newPassword.value;
          try {
            await api("PUT", `/api/v1/users/${encodeURIComponent(u.name)}`, body);
            say("ok", `Saved ${u.name}.`);
            newPassword.value = "";
          } catch (e) {
            say("error", `${u.name} not saved: ${e.message}`);
          }
        }, { class: "small", dataset: { test: "user-save", name: u.name } }),
        " ",
        self
          ? null
          : actionButton("Delete", async () => {
              try {
                await api("DELETE", `/api/v1/users/${encodeURIComponent(u.name)}`);
                reload();
              } catch (e) {
                say("error", `${u.name} not deleted: ${e.message}`);
              }
            }, { class: "small danger", dataset: { test: "user-delete", name: u.name } }),
      ),
    };
  };

  replace(
    ctx.main,
    h("h1", {}, "Users"),
    h("p", { class: "muted" }, "Read only: sees everything. Analyst: also restores, closes, comments and overrides verdicts. Admin: also edits sources, match conditions and users."),
    messages,
    section("Add a user", {}, create),
    table(
      [
        { title: "Name", cell: (r) => h("strong", {}, r.u.name) },
        { title: "Role", cell: (r) => r.role },
        { title: "Disabled", cell: (r) => r.disabled },
        { title: "Created (UTC)", cell: (r) => time(r.u.created_at), class: "nowrap" },
        { title: "Password", cell: (r) => r.password },
        { title: "", cell: (r) => r.actions },
      ],
      users.map(row),
      { id: "user-table", rowAttrs: (r) => ({ dataset: { test: "user-row", name: r.u.name } }) },
    ),
  );
}
