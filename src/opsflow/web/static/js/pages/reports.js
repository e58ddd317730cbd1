// Reports: SLA compliance over time, MTTR against the previous period, breaches by
// priority and by customer tier, team performance; each report downloadable as CSV.
import { download, get, query } from "../api.js";
import { barChart, lineChart } from "../charts.js";
import { clear, h, label } from "../dom.js";

const PRIORITIES = ["CRITICAL", "HIGH", "MEDIUM", "LOW"];

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function downloadCsv(path, filters, name) {
  return download(`${path}${query({ ...filters, format: "csv" })}`, name);
}

export function reportsPage(main, params) {
  const end = params.get("end") || isoDay(new Date(Date.now() + 86400000));
  const start = params.get("start") || isoDay(new Date(Date.now() - 29 * 86400000));
  const groupBy = params.get("group_by") || "day";
  const filters = { start_date: `${start}T00:00:00Z`, end_date: `${end}T00:00:00Z` };
  const form = h(
    "form",
    {
      class: "filters",
      "aria-label": "Period",
      onsubmit: (event) => {
        event.preventDefault();
        const data = new FormData(form);
        location.hash = `#/reports${query({ start: data.get("start"), end: data.get("end"), group_by: data.get("group_by") })}`;
      },
    },
    h(
      "div",
      { class: "row" },
      h("div", { class: "field" }, h("label", { for: "r-start" }, "From"), h("input", { id: "r-start", name: "start", type: "date", value: start })),
      h("div", { class: "field" }, h("label", { for: "r-end" }, "Until (excluded)"), h("input", { id: "r-end", name: "end", type: "date", value: end })),
      h("div", { class: "field" }, h("label", { for: "r-group" }, "Buckets"),
        h("select", { id: "r-group", name: "group_by" }, ["day", "week", "month"].map((g) => h("option", { value: g, selected: g === groupBy }, g)))),
      h("button", { type: "submit" }, "Show"),
    ),
  );
  const body = h("div", { id: "reports" }, h("p", { class: "muted" }, "Loading…"));
  clear(main, h("h1", {}, "Reports"), form, body);
  load(body, filters, groupBy);
}

async function load(body, filters, groupBy) {
  let summary, incidents, teams, compliance;
  try {
    [summary, incidents, teams, compliance] = await Promise.all([
      get(`/reports/sla-summary${query({ ...filters, group_by: groupBy })}`),
      get(`/reports/incidents${query(filters)}`),
      get(`/reports/team-performance${query(filters)}`),
      get(`/reports/sla-compliance${query(filters)}`),
    ]);
  } catch (error) {
    clear(body, h("p", { class: "error", role: "alert" }, `Could not load the reports: ${error.message}`));
    return;
  }
  const error = h("p", { class: "error", role: "alert" });
  const csv = (path, name) =>
    h("button", { type: "button", class: "secondary", onclick: () => downloadCsv(path, filters, name).catch((e) => { error.textContent = e.message; }) }, `CSV: ${name}`);
  const overall = summary.overall_metrics;
  const inc = incidents.incident_metrics;
  const byPriority = PRIORITIES.map((p) => summary.by_priority.find((x) => x.priority === p) || { priority: p, breaches: 0 });
  clear(
    body,
    h("section", { class: "stats", "aria-label": "Overall" },
      h("div", { class: "stat" }, h("span", { class: "value" }, overall.total_tasks), h("span", { class: "name" }, "Tasks")),
      h("div", { class: "stat" }, h("span", { class: "value" }, `${overall.completion_rate} %`), h("span", { class: "name" }, "Completion rate")),
      h("div", { class: "stat" }, h("span", { class: "value" }, `${overall.sla_breach_rate} %`), h("span", { class: "name" }, "Breach rate")),
      h("div", { class: "stat" }, h("span", { class: "value" }, inc.mttr_hours ?? "—"), h("span", { class: "name" }, "MTTR (hours)")),
      h("div", { class: "stat" }, h("span", { class: "value" }, compliance.mtta_minutes ?? "—"), h("span", { class: "name" }, "MTTA (minutes)")),
    ),
    h("div", { class: "charts" },
      h("figure", {}, h("figcaption", {}, "SLA compliance over time (% of tasks created without a breach)"),
        lineChart("SLA compliance over time", summary.time_series.map((p) => ({ label: p.date.slice(5), value: p.total ? Math.round(1000 * (1 - p.breaches / p.total)) / 10 : null })), { unit: "%", max: 100, id: "chart-compliance" })),
      h("figure", {}, h("figcaption", {}, `MTTR (hours): this period against the one before — ${inc.mttr_trend}`),
        barChart("MTTR trend", [{ label: "previous", value: inc.previous_mttr_hours }, { label: "this period", value: inc.mttr_hours, cls: `trend-${inc.mttr_trend}` }], { unit: " h", id: "chart-mttr" })),
      h("figure", {}, h("figcaption", {}, "Breached tasks by priority"),
        barChart("Breaches by priority", byPriority.map((p) => ({ label: label(p.priority), value: p.breaches, cls: "breach" })), { id: "chart-priority" })),
      h("figure", {}, h("figcaption", {}, "Breached tasks by customer tier"),
        barChart("Breaches by tier", compliance.breaches_by_tier.map((t) => ({ label: label(t.customer_tier), value: t.breaches, cls: "breach" })), { id: "chart-tier" })),
      h("figure", {}, h("figcaption", {}, "Team performance: completed tasks per team"),
        barChart("Completed tasks per team", teams.by_team.map((t) => ({ label: t.team.name, value: t.completed_tasks })), { id: "chart-teams" })),
    ),
    h("section", { "aria-labelledby": "h-people" }, h("h2", { id: "h-people" }, "Team performance by person"),
      teams.team_metrics.length
        ? h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Team performance by person" }, h("table", {},
            h("thead", {}, h("tr", {}, ["Person", "Assigned", "Completed", "Open", "Avg. completion (h)", "Breaches", "Breach rate", "Workload"].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, teams.team_metrics.map((m) => h("tr", {},
              h("td", {}, m.user.full_name || m.user.username), h("td", {}, m.assigned_tasks), h("td", {}, m.completed_tasks),
              h("td", {}, m.in_progress_tasks), h("td", {}, m.avg_completion_time_hours ?? "—"), h("td", {}, m.sla_breaches),
              h("td", {}, `${m.breach_rate} %`), h("td", {}, m.workload_score))))))
        : h("p", { class: "muted" }, "Nobody was assigned a task in this period.")),
    h("section", { class: "actions", "aria-label": "Downloads" },
      csv("/reports/sla-summary", "sla-summary.csv"), csv("/reports/incidents", "incidents.csv"),
      csv("/reports/team-performance", "team-performance.csv"), csv("/reports/sla-compliance", "sla-compliance.csv"), error),
  );
}
