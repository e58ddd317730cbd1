// One task: fields, SLA clocks with their explanation, the actions the caller's role allows
// on it (and nothing else), the timeline and the conversation. Reloads on the task's live
// events.
import { request } from "../api.js";
import { badge, clear, debounce, duration, h, label, slaBadge, timeEl } from "../dom.js";
import { onEvent } from "../live.js";
import { markdownEl } from "../markdown.js";
import { app, can, teamName } from "../state.js";
import { attachmentsSection } from "./attachments.js";

const OPEN = ["CREATED", "ASSIGNED", "IN_PROGRESS", "BLOCKED"];

// Each action: permission, when the status allows it, the request, and the inputs it asks.
const ACTIONS = [
  { id: "acknowledge", text: "Acknowledge", perm: "task_progress", when: (t) => ["CREATED", "ASSIGNED"].includes(t.status) && !t.acknowledged_at, path: "acknowledge" },
  { id: "start", text: "Start", perm: "task_progress", when: (t) => ["CREATED", "ASSIGNED"].includes(t.status), path: "start" },
  { id: "block", text: "Block", perm: "task_progress", when: (t) => t.status === "IN_PROGRESS", path: "block", input: { name: "reason", text: "Reason" } },
  { id: "unblock", text: "Unblock", perm: "task_progress", when: (t) => t.status === "BLOCKED", path: "unblock" },
  { id: "complete", text: "Complete", perm: "task_progress", when: (t) => ["IN_PROGRESS", "BLOCKED"].includes(t.status), path: "complete", input: { name: "resolution_notes", text: "Resolution notes" } },
  { id: "reopen", text: "Reopen", perm: "task_progress", when: (t) => t.status === "COMPLETED", path: "reopen", input: { name: "reason", text: "Reason" } },
  { id: "snooze", text: "Snooze", perm: "task_snooze", when: (t) => OPEN.includes(t.status), path: "snooze", input: { name: "minutes", text: "Minutes", type: "number", required: true, value: "60" } },
  { id: "pause", text: "Pause SLA", perm: "task_snooze", when: (t) => OPEN.includes(t.status) && !t.sla_paused_at, path: "sla/pause", input: { name: "reason", text: "Reason" } },
  { id: "resume", text: "Resume SLA", perm: "task_snooze", when: (t) => OPEN.includes(t.status) && t.sla_paused_at, path: "sla/resume" },
  { id: "escalate", text: "Escalate", perm: "task_update", when: (t) => OPEN.includes(t.status), post: "escalate", input: { name: "reason", text: "Reason" } },
];

export function allowedActions(task) {
  return ACTIONS.filter((a) => a.when(task) && can(a.perm, task));
}

function person(user) {
  return user ? user.full_name || user.username : "—";
}

export function taskPage(main, id) {
  const view = h("div", { class: "task" }, h("p", { class: "muted" }, "Loading…"));
  clear(main, h("p", {}, h("a", { href: "#/tasks" }, "← Tasks")), view);
  const state = { task: null, message: "", kept: {} };

  const load = async () => {
    try {
      const [task, sla, timeline, comments, attachments] = await Promise.all([
        request("GET", `/tasks/${id}`),
        request("GET", `/tasks/${id}/sla`),
        request("GET", `/tasks/${id}/timeline?limit=100`),
        request("GET", `/tasks/${id}/comments?limit=100`),
        request("GET", `/tasks/${id}/attachments`),
      ]);
      state.task = task;
      render(view, state, { sla, timeline, comments, attachments: attachments.items }, load);
    } catch (error) {
      clear(view, h("p", { class: "error", role: "alert" }, `Could not load the task: ${error.message}`));
    }
  };
  const reload = debounce(load, 200);
  app.cleanup.push(onEvent((frame) => {
    if (frame.type === "live.resumed" || frame.task?.id === id || frame.data?.task_id === id) reload();
  }));
  load();
}

function render(view, state, { sla, timeline, comments, attachments }, load) {
  const task = state.task;
  const fields = [
    ["Status", badge("status", task.status)],
    ["Priority", badge("priority", task.priority)],
    ["Type", badge("type", task.task_type)],
    ["Team", teamName(task.team_id)],
    ["Assignee", person(task.assigned_to)],
    ["Also assigned", task.additional_assignees.map(person).join(", ") || "—"],
    ["Created by", person(task.created_by)],
    ["Customer tier", label(task.customer_tier)],
    ["Service", task.service || "—"],
    ["Tags", task.tags.length ? task.tags.map((t) => h("span", { class: "tag" }, t)) : "—"],
    ["Created", timeEl(task.created_at)],
    ["Acknowledged", timeEl(task.acknowledged_at)],
    ["Started", timeEl(task.started_at)],
    ["Completed", timeEl(task.completed_at)],
    ["SLA policy", task.sla_policy_name || "built-in defaults"],
  ];
  if (task.blocked_reason) fields.push(["Blocked", task.blocked_reason]);
  if (task.snoozed_until) fields.push(["Snoozed until", timeEl(task.snoozed_until)]);
  if (task.sla_paused_at) fields.push(["SLA paused", [timeEl(task.sla_paused_at), " ", task.sla_pause_reason || ""]]);
  if (task.resolution_notes) fields.push(["Resolution", task.resolution_notes]);

  clear(
    view,
    h("h1", {}, task.title, " ", slaBadge(task.sla_status)),
    actionsSection(state, load),
    h("section", { "aria-labelledby": "h-fields" }, h("h2", { id: "h-fields" }, "Details"),
      h("dl", { class: "fields" }, fields.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      task.description ? markdownEl(task.description) : null),
    clocksSection(sla),
    commentsSection(task, comments, load, state.kept),
    attachmentsSection(task, attachments, load, state.kept),
    timelineSection(timeline),
  );
}

function actionsSection(state, load) {
  const task = state.task;
  const actions = allowedActions(task);
  const message = h("p", { class: "error", role: "alert" }, state.message);
  if (!actions.length) return h("section", { class: "actions", "aria-label": "Actions" }, message);
  const dialog = h("dialog", { class: "card" });
  const run = async (action, body) => {
    state.message = "";
    try {
      if (action.post) await request("POST", `/tasks/${task.id}/${action.post}`, { body: body || {} });
      else await request("PATCH", `/tasks/${task.id}/${action.path}`, { body: body || {}, headers: { "If-Match": `"${task.version}"` } });
    } catch (error) {
      state.message = `${action.text} failed: ${error.message}`;
    }
    await load();
  };
  const ask = (action) => {
    const input = action.input;
    const control = h("input", { id: "action-input", name: input.name, type: input.type || "text", required: input.required, value: input.value, min: input.type === "number" ? 1 : null });
    clear(
      dialog,
      h(
        "form",
        {
          method: "dialog",
          onsubmit: (event) => {
            event.preventDefault();
            dialog.close();
            const value = control.value.trim();
            const body = {};
            if (value) body[input.name] = input.type === "number" ? Number(value) : value;
            run(action, body);
          },
        },
        h("h2", {}, action.text),
        h("label", { for: "action-input" }, input.text),
        control,
        h("div", { class: "row" }, h("button", { type: "submit" }, action.text), h("button", { type: "button", class: "secondary", onclick: () => dialog.close() }, "Cancel")),
      ),
    );
    dialog.showModal();
    control.focus();
  };
  return h(
    "section",
    { class: "actions", "aria-label": "Actions" },
    actions.map((action) =>
      h("button", { type: "button", "data-action": action.id, onclick: () => (action.input ? ask(action) : run(action)) }, action.text),
    ),
    dialog,
    message,
  );
}

function clocksSection(sla) {
  const rows = sla.clocks.map((clock) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, clock.kind === "START" ? "Response" : "Resolution"),
      h("td", {}, label(clock.status)),
      h("td", {}, `${clock.target_minutes} min`, h("div", { class: "muted" }, clock.calendar)),
      h("td", {}, timeEl(clock.deadline), clock.paused_at ? h("div", { class: "muted" }, "paused") : null),
      h("td", {}, clock.remaining_seconds === null ? "—" : duration(clock.remaining_seconds)),
      h(
        "td",
        {},
        `working ${duration(clock.explanation.working_seconds)}`,
        h("br"),
        `paused ${duration(clock.explanation.paused_seconds)}`,
        h("br"),
        `outside hours ${duration(clock.explanation.outside_hours_seconds)}`,
      ),
      h("td", {}, clock.thresholds.map((t) => h("div", { class: t.fired ? "fired" : "" }, `${t.name} ${t.fired ? "✓" : ""} `, timeEl(t.due_at)))),
    ),
  );
  return h(
    "section",
    { "aria-labelledby": "h-sla" },
    h("h2", { id: "h-sla" }, "SLA clocks"),
    h(
      "div",
      { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "SLA clocks" },
      h(
        "table",
        { class: "clocks" },
        h("thead", {}, h("tr", {}, ["Clock", "Status", "Target", "Deadline", "Remaining", "Time counted", "Thresholds"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, rows),
      ),
    ),
  );
}

// `kept` (see attachmentsSection) keeps the comment form, and so a draft being typed, across
// the re-renders live events cause.
function commentsSection(task, comments, load, kept) {
  const items = comments.items.map((c) =>
    h(
      "li",
      { class: c.internal ? "comment internal" : "comment", "data-comment-id": c.id },
      h("div", { class: "meta" }, h("strong", {}, c.author.name), " · ", timeEl(c.created_at), c.edited_at ? " · edited" : "",
        c.internal ? h("span", { class: "badge internal" }, "internal") : null),
      markdownEl(c.body),
    ),
  );
  const form = can("comment") ? (kept.commentForm ??= commentForm(task, load)) : null;
  return h(
    "section",
    { "aria-labelledby": "h-comments" },
    h("h2", { id: "h-comments" }, `Comments (${comments.items.length})`),
    items.length ? h("ul", { class: "comments" }, items) : h("p", { class: "muted" }, "No comments yet."),
    form,
  );
}

function commentForm(task, load) {
  const error = h("p", { class: "error", role: "alert" });
  const text = h("textarea", { id: "comment-body", name: "body", rows: 4, required: true });
  const internal = can("comment_internal") ? h("input", { id: "comment-internal", type: "checkbox", name: "internal" }) : null;
  const form = h(
    "form",
    {
      class: "comment-form",
      onsubmit: async (event) => {
        event.preventDefault();
        error.textContent = "";
        try {
          await request("POST", `/tasks/${task.id}/comments`, { body: { body: text.value, internal: Boolean(internal?.checked) } });
          text.value = "";
          await load();
        } catch (err) {
          error.textContent = err.message;
        }
      },
    },
    h("label", { for: "comment-body" }, "Add a comment (Markdown)"),
    text,
    internal ? h("label", { class: "inline" }, internal, " Internal (hidden from viewers)") : null,
    h("button", { type: "submit" }, "Comment"),
    error,
  );
  return form;
}

function timelineSection(timeline) {
  return h(
    "section",
    { "aria-labelledby": "h-timeline" },
    h("h2", { id: "h-timeline" }, "Timeline"),
    h(
      "ol",
      { class: "timeline" },
      timeline.items.map((entry) =>
        h("li", { class: `kind-${entry.kind}` }, timeEl(entry.occurred_at), " ", h("span", { class: "badge" }, entry.kind), " ", entry.summary, entry.actor?.name ? h("span", { class: "muted" }, ` — ${entry.actor.name}`) : null),
      ),
    ),
  );
}
