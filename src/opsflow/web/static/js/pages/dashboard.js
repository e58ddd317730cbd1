// The live dashboard: counts, tasks at risk with a countdown to their next SLA threshold,
// recent breaches and upcoming deadlines (GET /reports/dashboard and GET /tasks). It
// reloads when an event arrives on the live stream — never by polling; the countdowns tick
// in the browser between events.
import { get, query } from "../api.js";
import { clear, debounce, h, slaBadge, timeEl } from "../dom.js";
import { onEvent } from "../live.js";
import { app } from "../state.js";

const OPEN = "CREATED,ASSIGNED,IN_PROGRESS,BLOCKED";

function countdown(instant, prefix) {
  const el = h("span", { class: "countdown", "data-until": instant });
  el.dataset.prefix = prefix;
  return el;
}

// 93784 -> "1 d 02:03:04": a countdown shows its seconds so it visibly ticks.
function clockText(seconds) {
  const sign = seconds < 0 ? "overdue " : "";
  let left = Math.floor(Math.abs(seconds));
  const days = Math.floor(left / 86400);
  left -= days * 86400;
  const pad = (n) => String(n).padStart(2, "0");
  const hms = `${pad(Math.floor(left / 3600))}:${pad(Math.floor((left % 3600) / 60))}:${pad(left % 60)}`;
  return `${sign}${days ? `${days} d ` : ""}${hms}`;
}

function tick(root) {
  const now = Date.now();
  for (const el of root.querySelectorAll(".countdown")) {
    const left = (Date.parse(el.dataset.until) - now) / 1000;
    el.textContent = `${el.dataset.prefix} ${clockText(left)}`;
    el.classList.toggle("overdue", left < 0);
  }
}

export function dashboardPage(main) {
  const body = h("div", { id: "dashboard" }, h("p", { class: "muted" }, "Loading…"));
  clear(main, h("h1", {}, "Dashboard"), body);
  const load = async () => {
    try {
      const [report, warning, critical] = await Promise.all([
        get("/reports/dashboard"),
        get(`/tasks${query({ status: OPEN, sla_state: "warning", sort: "deadline", order: "asc", page_size: 10 })}`),
        get(`/tasks${query({ status: OPEN, sla_state: "critical", sort: "deadline", order: "asc", page_size: 10 })}`),
      ]);
      const atRisk = [...critical.items, ...warning.items].slice(0, 10);
      const clocks = await Promise.all(atRisk.map((t) => get(`/tasks/${t.id}/sla`).catch(() => null)));
      render(body, report, atRisk, clocks);
      tick(body);
    } catch (error) {
      clear(body, h("p", { class: "error", role: "alert" }, `Could not load the dashboard: ${error.message}`));
    }
  };
  const reload = debounce(load, 300);
  app.cleanup.push(onEvent((frame) => {
    if (frame.type === "live.resumed" || /^(task|sla|escalation)\./.test(frame.type)) reload();
  }));
  const timer = setInterval(() => tick(body), 1000);
  app.cleanup.push(() => clearInterval(timer));
  load();
}

// The next threshold of a task's running clocks: its name and instant.
function nextThreshold(sla) {
  let best = null;
  for (const clock of sla?.clocks ?? []) {
    if (clock.status !== "ACTIVE") continue;
    for (const threshold of clock.thresholds) {
      if (threshold.fired || !threshold.due_at) continue;
      if (!best || threshold.due_at < best.at) best = { name: threshold.name, at: threshold.due_at, kind: clock.kind };
    }
  }
  return best;
}

function render(body, report, atRisk, clocks) {
  const stats = report.realtime_stats;
  const card = (id, text, value) => h("div", { class: "stat", id }, h("span", { class: "value" }, value), h("span", { class: "name" }, text));
  const riskRows = atRisk.map((task, i) => {
    const next = nextThreshold(clocks[i]);
    return h(
      "li",
      { class: "risk", "data-task-id": task.id },
      h("a", { href: `#/tasks/${task.id}` }, task.title),
      " ",
      slaBadge(task.sla_status),
      " ",
      next ? countdown(next.at, `${next.kind === "START" ? "response" : "resolution"} ${next.name.replace(/^(START|RESOLVE)_/, "").toLowerCase()} in`) : h("span", { class: "muted" }, "no threshold ahead"),
    );
  });
  clear(
    body,
    h(
      "section",
      { class: "stats", "aria-label": "Counts" },
      card("stat-active", "Active incidents", stats.active_incidents),
      card("stat-critical", "Critical incidents", stats.critical_incidents),
      card("stat-risk", "Tasks at risk", stats.tasks_at_risk),
      card("stat-escalations", "Pending escalations", stats.pending_escalations),
      card("stat-utilization", "Team utilization", `${stats.team_utilization} %`),
    ),
    h(
      "div",
      { class: "columns" },
      h(
        "section",
        { "aria-labelledby": "h-risk" },
        h("h2", { id: "h-risk" }, "Tasks at risk"),
        riskRows.length ? h("ul", { class: "plain" }, riskRows) : h("p", { class: "muted" }, "No task is at risk."),
      ),
      h(
        "section",
        { "aria-labelledby": "h-upcoming" },
        h("h2", { id: "h-upcoming" }, "Upcoming deadlines"),
        report.upcoming_deadlines.length
          ? h("ul", { class: "plain" }, report.upcoming_deadlines.map((d) =>
              h("li", {}, h("a", { href: `#/tasks/${d.task_id}` }, d.title), " ",
                h("span", { class: "muted" }, d.sla_type === "START" ? "response" : "resolution"), " ",
                countdown(d.deadline, "due in"), d.at_risk ? h("span", { class: "badge sla-warning" }, "at risk") : null)))
          : h("p", { class: "muted" }, "No deadline ahead."),
      ),
      h(
        "section",
        { "aria-labelledby": "h-breaches" },
        h("h2", { id: "h-breaches" }, "Recent breaches"),
        report.recent_breaches.length
          ? h("ul", { class: "plain" }, report.recent_breaches.map((b) =>
              h("li", {}, h("a", { href: `#/tasks/${b.task_id}` }, b.title), " ",
                h("span", { class: "badge sla-breached" }, b.breach_type === "START" ? "response" : "resolution"), " ",
                timeEl(b.triggered_at), b.delay_minutes ? h("span", { class: "muted" }, ` (recorded ${b.delay_minutes} min late)`) : null)))
          : h("p", { class: "muted" }, "No breach in the last 30 days."),
      ),
    ),
  );
}
