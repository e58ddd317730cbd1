// The task list: every filter of GET /tasks, sort, pagination, SLA badges. The filters live
// in the URL (#/tasks?status=…&page=2), so a view can be bookmarked and shared; the list
// reloads when a task event arrives on the live stream.
import { get, query } from "../api.js";
import { badge, clear, debounce, duration, h, label, slaBadge, timeEl } from "../dom.js";
import { onEvent } from "../live.js";
import { app, teamName } from "../state.js";

export const STATUSES = ["CREATED", "ASSIGNED", "IN_PROGRESS", "BLOCKED", "COMPLETED", "CANCELLED"];
export const PRIORITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW"];
export const TYPES = ["TASK", "INCIDENT"];
export const TIERS = ["ENTERPRISE", "PREMIUM", "STANDARD", "BASIC"];
const SLA_STATES = ["compliant", "warning", "critical", "breached"];
const SORTS = { created_at: "Created", updated_at: "Updated", priority: "Priority", deadline: "Deadline" };
const FIELDS = ["status", "priority", "task_type", "team_id", "customer_tier", "sla_state", "tags", "q", "sort", "order", "page", "page_size"];

function checks(name, values, selected) {
  return h(
    "fieldset",
    { class: "checks" },
    h("legend", {}, label(name)),
    values.map((value) =>
      h("label", {}, h("input", { type: "checkbox", name, value, checked: selected.includes(value) }), ` ${label(value)}`),
    ),
  );
}

function select(name, text, options, current) {
  const id = `f-${name}`;
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, text),
    h(
      "select",
      { id, name },
      options.map(([value, shown]) => h("option", { value, selected: value === current }, shown)),
    ),
  );
}

function textField(name, text, current, placeholder) {
  const id = `f-${name}`;
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, text),
    h("input", { id, name, type: "search", value: current, placeholder }),
  );
}

function filtersFrom(params) {
  const filters = {};
  for (const key of FIELDS) filters[key] = params.get(key) ?? "";
  return filters;
}

function hashFor(filters) {
  return `#/tasks${query(filters)}`;
}

export function tasksPage(main, params) {
  const filters = filtersFrom(params);
  const list = (key) => (filters[key] ? filters[key].split(",") : []);
  const teams = [["", "Any team"], ...[...app.teams].map(([id, name]) => [id, name])];
  const form = h(
    "form",
    {
      class: "filters",
      "aria-label": "Filters",
      onsubmit: (event) => {
        event.preventDefault();
        const data = new FormData(form);
        const next = {};
        for (const key of FIELDS) {
          const values = data.getAll(key).filter(Boolean);
          next[key] = values.join(",");
        }
        next.page = "";
        location.hash = hashFor(next);
      },
    },
    checks("status", STATUSES, list("status")),
    checks("priority", PRIORITIES, list("priority")),
    h(
      "div",
      { class: "row" },
      select("task_type", "Type", [["", "Any type"], ...TYPES.map((t) => [t, label(t)])], filters.task_type),
      app.teams.size ? select("team_id", "Team", teams, filters.team_id) : textField("team_id", "Team id", filters.team_id, "UUID"),
      select("customer_tier", "Tier", [["", "Any tier"], ...TIERS.map((t) => [t, label(t)])], filters.customer_tier),
      select("sla_state", "SLA state", [["", "Any SLA state"], ...SLA_STATES.map((s) => [s, s])], filters.sla_state),
      textField("tags", "Tags (all of)", filters.tags, "db, eu-west"),
      textField("q", "Text", filters.q, "title or description"),
      select("sort", "Sort by", [["", "Created"], ...Object.entries(SORTS).filter(([k]) => k !== "created_at")], filters.sort),
      select("order", "Order", [["", "Newest / highest first"], ["asc", "Ascending"], ["desc", "Descending"]], filters.order),
      select("page_size", "Per page", [["", "20"], ["50", "50"], ["100", "100"]], filters.page_size),
    ),
    h(
      "div",
      { class: "row" },
      h("button", { type: "submit" }, "Apply filters"),
      h("a", { href: "#/tasks", class: "button secondary" }, "Clear"),
    ),
  );
  const body = h("div", { id: "task-list", "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
  clear(main, h("h1", {}, "Tasks"), form, body);

  let known = null;
  const load = async () => {
    try {
      const answer = await get(`/tasks${query(filters)}`);
      const fresh = new Set(answer.items.map((t) => t.id));
      const added = known ? [...fresh].filter((id) => !known.has(id)) : [];
      known = fresh;
      renderList(body, answer, filters, new Set(added));
    } catch (error) {
      clear(body, h("p", { class: "error", role: "alert" }, `Could not load the tasks: ${error.message}`));
    }
  };
  const reload = debounce(load, 250);
  app.cleanup.push(onEvent((frame) => {
    if (frame.type === "live.resumed" || /^(task|sla|escalation)\./.test(frame.type)) reload();
  }));
  load();
}

function renderList(body, answer, filters, added) {
  const { items, pagination } = answer;
  if (!items.length) {
    clear(body, h("p", { class: "muted" }, "No task matches these filters."));
    return;
  }
  const rows = items.map((task) =>
    h(
      "tr",
      { class: added.has(task.id) ? "task-row new" : "task-row", "data-task-id": task.id },
      h("td", {}, h("a", { href: `#/tasks/${task.id}` }, task.title)),
      h("td", {}, badge("type", task.task_type)),
      h("td", {}, badge("priority", task.priority)),
      h("td", {}, badge("status", task.status)),
      h("td", {}, teamName(task.team_id)),
      h("td", {}, task.assigned_to ? task.assigned_to.full_name || task.assigned_to.username : "—"),
      h("td", {}, slaBadge(task.sla_status), " ", h("span", { class: "muted" }, remaining(task))),
      h("td", {}, timeEl(task.created_at)),
    ),
  );
  const page = pagination.page;
  const go = (target) => hashFor({ ...filters, page: target === 1 ? "" : String(target) });
  clear(
    body,
    h(
      "div",
      { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Task list" },
      h(
        "table",
        { class: "tasks" },
        h("caption", { class: "sr-only" }, "Tasks"),
        h("thead", {}, h("tr", {}, ["Title", "Type", "Priority", "Status", "Team", "Assignee", "SLA", "Created"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows),
      ),
    ),
    h(
      "nav",
      { class: "pager", "aria-label": "Pages" },
      pagination.has_previous ? h("a", { href: go(page - 1), rel: "prev" }, "← Previous") : null,
      h("span", {}, `Page ${page} of ${Math.max(1, pagination.total_pages)} · ${pagination.total_items} tasks`),
      pagination.has_next ? h("a", { href: go(page + 1), rel: "next" }, "Next →") : null,
    ),
  );
}

function remaining(task) {
  const sla = task.sla_status;
  if (!sla || sla.time_remaining_seconds === null || sla.time_remaining_seconds === undefined) return "";
  return duration(sla.time_remaining_seconds);
}
