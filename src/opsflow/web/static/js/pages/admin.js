// Administration: users and teams, alert integrations (with the URLs to paste into
// Alertmanager or Grafana), notification dead letters with retry, SLA policies (edited, and
// the simulation dry run drawn as a timeline), business calendars, escalation policies and
// heartbeat monitors. Each section shows only for the roles that may use it.
import { get, query, request } from "../api.js";
import { clear, h, label, timeEl } from "../dom.js";
import { app, can } from "../state.js";
import { calendarsSection, escalationSection, heartbeatsSection, slaPoliciesEditor } from "./config.js";
import { PRIORITIES, TIERS, TYPES } from "./tasks.js";

const ROLES = ["admin", "manager", "team_lead", "developer", "support", "auditor", "viewer"];
const SECTIONS = [
  { id: "users", text: "Users and teams", allowed: () => can("read_users") && (can("administer") || can("manage_teams")), render: usersSection },
  { id: "integrations", text: "Integrations", allowed: () => can("administer"), render: integrationsSection },
  { id: "dead-letters", text: "Dead letters", allowed: () => can("notifications_retry"), render: deadLettersSection },
  { id: "sla", text: "SLA policies", allowed: () => can("sla_read"), render: slaSection },
  { id: "calendars", text: "Calendars", allowed: () => can("sla_read"), render: calendarsSection },
  { id: "escalation", text: "Escalation policies", allowed: () => can("sla_read"), render: escalationSection },
  { id: "heartbeats", text: "Heartbeat monitors", allowed: () => can("task_read"), render: heartbeatsSection },
];

export function adminAllowed() {
  return SECTIONS.some((s) => s.allowed());
}

function field(id, text, control) {
  return h("div", { class: "field" }, h("label", { for: id }, text), control);
}

function options(values, current, shown = label) {
  return values.map((v) => h("option", { value: v, selected: v === current }, shown(v)));
}

function teamOptions(emptyText) {
  return [h("option", { value: "" }, emptyText), [...app.teams].map(([id, name]) => h("option", { value: id }, name))];
}

function table(caption, headers, rows) {
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    h("table", {}, h("thead", {}, h("tr", {}, headers.map((c) => h("th", { scope: "col" }, c)))), h("tbody", {}, rows)),
  );
}

export function adminPage(main, params) {
  const sections = SECTIONS.filter((s) => s.allowed());
  const current = sections.find((s) => s.id === params.get("section")) || sections[0];
  const body = h("div", { id: "admin-body" }, h("p", { class: "muted" }, "Loading…"));
  clear(
    main,
    h("h1", {}, "Administration"),
    h("nav", { class: "tabs", "aria-label": "Administration" }, sections.map((s) =>
      h("a", { href: `#/admin?section=${s.id}`, "aria-current": s === current ? "page" : null }, s.text))),
    body,
  );
  const reload = () => current.render(body, reload).catch((error) => {
    clear(body, h("p", { class: "error", role: "alert" }, `Could not load: ${error.message}`));
  });
  reload();
}

async function usersSection(body, reload) {
  const users = await get("/users?page_size=100");
  const teams = await get("/teams?page_size=100");
  app.teams = new Map(teams.items.map((t) => [t.id, t.name]));
  const error = h("p", { class: "error", role: "alert" });
  const act = (fn) => async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await fn(event.target);
      await reload();
    } catch (err) {
      error.textContent = err.message;
    }
  };
  const userRows = users.items.map((u) =>
    h("tr", { "data-user": u.username },
      h("td", {}, u.username), h("td", {}, u.full_name || "—"), h("td", {}, u.email || "—"), h("td", {}, label(u.role)),
      h("td", {}, u.team_id ? app.teams.get(u.team_id) || "—" : "—"), h("td", {}, u.is_active ? "active" : "deactivated"),
      h("td", {}, can("administer") && u.is_active && u.id !== app.me.id
        ? h("button", { type: "button", class: "secondary", onclick: act(() => request("POST", `/users/${u.id}/deactivate`)) }, `Deactivate ${u.username}`)
        : null)));
  const parts = [h("h2", {}, `Users (${users.pagination.total_items})`), table("Users", ["Username", "Name", "E-mail", "Role", "Team", "State", ""], userRows)];
  if (can("administer")) {
    const form = h("form", { class: "card form-grid", onsubmit: act(async (f) => {
      const data = new FormData(f);
      const body = { username: data.get("username"), email: data.get("email"), password: data.get("password"), role: data.get("role") };
      if (data.get("full_name")) body.full_name = data.get("full_name");
      if (data.get("team_id")) body.team_id = data.get("team_id");
      await request("POST", "/auth/register", { body });
    }) },
      h("h3", {}, "New user"),
      field("u-username", "Username", h("input", { id: "u-username", name: "username", required: true })),
      field("u-email", "E-mail", h("input", { id: "u-email", name: "email", type: "email", required: true })),
      field("u-name", "Full name", h("input", { id: "u-name", name: "full_name" })),
      field("u-role", "Role", h("select", { id: "u-role", name: "role" }, options(ROLES, "developer"))),
      field("u-team", "Team", h("select", { id: "u-team", name: "team_id" }, teamOptions("No team"))),
      field("u-password", "Password", h("input", { id: "u-password", name: "password", type: "password", autocomplete: "new-password", required: true })),
      h("button", { type: "submit" }, "Create user"));
    parts.push(form);
  }
  parts.push(h("h2", {}, `Teams (${teams.pagination.total_items})`),
    table("Teams", ["Name", "Description", "State"], teams.items.map((t) =>
      h("tr", {}, h("td", {}, t.name), h("td", {}, t.description || "—"), h("td", {}, t.is_active ? "active" : "inactive")))));
  if (can("manage_teams")) {
    parts.push(h("form", { class: "card form-grid", onsubmit: act(async (f) => {
      const data = new FormData(f);
      const body = { name: data.get("name") };
      if (data.get("description")) body.description = data.get("description");
      await request("POST", "/teams", { body });
    }) },
      h("h3", {}, "New team"),
      field("t-name", "Team name", h("input", { id: "t-name", name: "name", required: true })),
      field("t-desc", "Description", h("input", { id: "t-desc", name: "description" })),
      h("button", { type: "submit" }, "Create team")));
  }
  parts.push(error);
  clear(body, parts);
}

function inboundUrls(urls) {
  return h("dl", { class: "fields urls" }, Object.entries(urls).map(([name, path]) => [
    h("dt", {}, name),
    h("dd", {}, h("code", { class: "url" }, new URL(`/api/v1${path}`, location.origin).href)),
  ]));
}

// An integration just created or given a new key: its URLs (with the key, shown only once)
// stay on screen after the list reloads.
let revealed = null;

async function integrationsSection(body, reload) {
  const list = await get("/integrations?page_size=100");
  const error = h("p", { class: "error", role: "alert" });
  const shown = h("div", { id: "integration-key", "aria-live": "polite" });
  const reveal = (integration) => clear(shown, h("div", { class: "card" },
    h("h3", {}, `Inbound URLs of ${integration.name}`),
    h("p", {}, "Paste the one for your tool into Alertmanager (webhook receiver) or Grafana (webhook contact point). The key in them is shown only now."),
    inboundUrls(integration.urls)));
  const rows = list.items.map((i) =>
    h("tr", {}, h("td", {}, i.name), h("td", {}, i.type), h("td", {}, i.team_id ? app.teams.get(i.team_id) || "—" : "—"),
      h("td", {}, i.enabled ? "enabled" : "disabled"), h("td", {}, h("code", {}, `${i.key_hint}…`)),
      h("td", {}, h("button", { type: "button", class: "secondary", onclick: async () => {
        error.textContent = "";
        try {
          revealed = await request("POST", `/integrations/${i.id}/rotate-key`);
          await reload();
        } catch (err) {
          error.textContent = err.message;
        }
      } }, `New key for ${i.name}`))));
  const form = h("form", { class: "card form-grid", onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = "";
    const data = new FormData(form);
    const payload = { name: data.get("name"), type: data.get("type") };
    if (data.get("team_id")) payload.team_id = data.get("team_id");
    try {
      revealed = await request("POST", "/integrations", { body: payload });
      await reload();
    } catch (err) {
      error.textContent = err.message;
    }
  } },
    h("h3", {}, "New integration"),
    field("i-name", "Name", h("input", { id: "i-name", name: "name", required: true })),
    field("i-type", "Type", h("select", { id: "i-type", name: "type" }, options(["alertmanager", "grafana", "elastic", "generic"], "alertmanager", (v) => v))),
    field("i-team", "Team of its incidents", h("select", { id: "i-team", name: "team_id" }, teamOptions("No team"))),
    h("button", { type: "submit" }, "Create integration"));
  clear(body, h("h2", {}, "Alert integrations"),
    list.items.length ? table("Integrations", ["Name", "Type", "Team", "State", "Key", ""], rows) : h("p", { class: "muted" }, "No integration yet."),
    shown, form, error);
  if (revealed) {
    reveal(revealed);
    revealed = null;
  }
}

async function deadLettersSection(body, reload) {
  const [dead, failed] = await Promise.all([
    get(`/notifications${query({ status: "DEAD", page_size: 100 })}`),
    get(`/notifications${query({ status: "FAILED", page_size: 100 })}`),
  ]);
  const items = [...dead.items, ...failed.items];
  const error = h("p", { class: "error", role: "alert" });
  const rows = items.map((n) =>
    h("tr", { "data-notification": n.id },
      h("td", {}, timeEl(n.scheduled_at)), h("td", {}, n.channel), h("td", {}, n.recipient), h("td", {}, n.subject || n.notification_type),
      h("td", {}, `${n.status} after ${n.attempts}/${n.max_attempts}`), h("td", {}, n.error_message || "—"),
      h("td", {}, h("button", { type: "button", onclick: async () => {
        error.textContent = "";
        try {
          await request("POST", `/notifications/${n.id}/retry`);
          await reload();
        } catch (err) {
          error.textContent = err.message;
        }
      } }, "Retry"))));
  clear(body, h("h2", {}, `Notification dead letters (${items.length})`),
    h("p", { class: "muted" }, "Notifications given up (every attempt spent, or failing in a way retrying cannot fix). Retry puts one back in the queue with fresh attempts."),
    items.length ? table("Dead letters", ["Due", "Channel", "Recipient", "Subject", "Status", "Last error", ""], rows) : h("p", { class: "muted" }, "No dead letter."),
    error);
}

// The simulated instants on one horizontal axis, from the start to the last one.
function simulationTimeline(result) {
  const marks = [
    ...result.clocks.flatMap((c) => c.thresholds.map((t) => ({ name: `${c.kind === "START" ? "response" : "resolution"} ${t.name.replace(/^(START|RESOLVE)_/, "").toLowerCase()}`, at: t.at, local: t.local_time }))),
    ...result.escalation_steps.map((s) => ({ name: `escalation level ${s.level} (${s.policy}) → ${s.targets.join(", ") || "nobody"}`, at: s.at, local: s.local_time })),
  ].sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  const list = h("ol", { class: "timeline", id: "simulation" }, marks.map((m) =>
    h("li", {}, h("strong", {}, m.name), " ", timeEl(m.at), h("span", { class: "muted" }, ` (${m.local}, ${result.timezone})`))));
  const start = Date.parse(result.start);
  const end = Math.max(start + 1, ...marks.map((m) => Date.parse(m.at)));
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 600 60");
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Simulated timeline: ${marks.map((m) => `${m.name} at ${m.local}`).join("; ")}`);
  const line = document.createElementNS(NS, "line");
  Object.entries({ x1: 10, x2: 590, y1: 30, y2: 30, class: "grid axis" }).forEach(([k, v]) => line.setAttribute(k, v));
  svg.append(line);
  for (const m of marks) {
    const dot = document.createElementNS(NS, "circle");
    const x = 10 + (580 * (Date.parse(m.at) - start)) / (end - start);
    Object.entries({ cx: x.toFixed(1), cy: 30, r: 5, class: /breach/.test(m.name) ? "dot breach" : "dot" }).forEach(([k, v]) => dot.setAttribute(k, v));
    const title = document.createElementNS(NS, "title");
    title.textContent = `${m.name}: ${m.local}`;
    dot.append(title);
    svg.append(dot);
  }
  return h("div", {}, h("p", {}, `Policy: ${result.policy || "built-in defaults"} · calendar ${result.calendar} (${result.timezone}) · from `, timeEl(result.start)), svg, list);
}

async function slaSection(body, reload) {
  const policies = await get("/sla-policies?page_size=100");
  const editor = await slaPoliciesEditor(body, reload);
  const result = h("div", { "aria-live": "polite" });
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "card form-grid", onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = "";
    const data = new FormData(form);
    const payload = { task_type: data.get("task_type"), priority: data.get("priority"), customer_tier: data.get("customer_tier") };
    if (data.get("policy")) payload.policy = data.get("policy");
    if (data.get("start")) payload.start = new Date(data.get("start")).toISOString();
    try {
      clear(result, simulationTimeline(await request("POST", "/sla-policies/simulate", { body: payload })));
    } catch (err) {
      error.textContent = err.message;
    }
  } },
    h("h3", {}, "Simulate (dry run, writes nothing)"),
    field("s-policy", "Policy", h("select", { id: "s-policy", name: "policy" }, h("option", { value: "" }, "The one that matches"), policies.items.map((p) => h("option", { value: p.name }, p.name)))),
    field("s-type", "Task type", h("select", { id: "s-type", name: "task_type" }, options(TYPES, "INCIDENT"))),
    field("s-priority", "Priority", h("select", { id: "s-priority", name: "priority" }, options(PRIORITIES, "HIGH"))),
    field("s-tier", "Customer tier", h("select", { id: "s-tier", name: "customer_tier" }, options(TIERS, "STANDARD"))),
    field("s-start", "Created at (default now)", h("input", { id: "s-start", name: "start", type: "datetime-local" })),
    h("button", { type: "submit" }, "Simulate"));
  clear(body, editor,
    policies.items.length ? null : h("p", { class: "muted" }, "No policy: every task gets the built-in defaults."),
    form, error, result);
}
