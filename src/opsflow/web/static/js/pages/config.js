// The configuration editors of the admin page: SLA policies (with the simulation dry run),
// business calendars, escalation policies and heartbeat monitors. Reading follows the API's
// roles (SLA policies, calendars and escalation policies: admin, manager, team lead;
// monitors: whoever reads tasks); changing them only admin and manager.
import { get } from "../api.js";
import { clear, h, label, timeEl } from "../dom.js";
import { app, can } from "../state.js";
import { editor, parts } from "./editor.js";
import { PRIORITIES, TIERS, TYPES } from "./tasks.js";

const any = (values) => [["*", "any"], ...values.map((v) => [v, label(v)])];
const int = (text, what) => {
  if (text === "") return null;
  const n = Number(text);
  if (!Number.isInteger(n)) throw new Error(`${what}: a whole number`);
  return n;
};

export async function slaPoliciesEditor(body, reload) {
  const [policies, calendars] = await Promise.all([get("/sla-policies?page_size=100"), get("/calendars?page_size=100")]);
  return [
    h("h2", {}, "SLA policies"),
    editor({
      key: "sla-policy",
      noun: "SLA policy",
      path: "/sla-policies",
      items: policies.items,
      writable: can("sla_write"),
      reload,
      columns: [
        ["Name", (p) => p.name],
        ["Matches", (p) => `${p.task_type} · ${p.priority} · ${p.customer_tier}`],
        ["Response / resolution", (p) => `${p.start_minutes} / ${p.resolve_minutes} min`],
        ["Thresholds", (p) => p.thresholds.map((t) => `${t} %`).join(", ")],
        ["Calendar", (p) => p.calendar],
        ["Escalation", (p) => p.escalation.map((e) => `level ${e.level} at ${e.minutes} min`).join(", ") || "—"],
        ["State", (p) => (p.is_active ? "active" : "inactive")],
      ],
      fields: [
        { name: "name", text: "Policy name", required: true, value: (p) => p.name },
        { name: "task_type", text: "Applies to task type", type: "select", options: any(TYPES), value: (p) => p.task_type },
        { name: "priority", text: "Applies to priority", type: "select", options: any(PRIORITIES), value: (p) => p.priority },
        { name: "customer_tier", text: "Applies to customer tier", type: "select", options: any(TIERS), value: (p) => p.customer_tier },
        { name: "start_minutes", text: "Response target (minutes)", type: "number", min: 1, required: true, value: (p) => p.start_minutes },
        { name: "resolve_minutes", text: "Resolution target (minutes)", type: "number", min: 1, required: true, value: (p) => p.resolve_minutes },
        { name: "warning", text: "Warning at (% of the target)", type: "number", initial: 75, value: (p) => p.thresholds[0] },
        { name: "critical", text: "Critical at (% of the target)", type: "number", initial: 95, value: (p) => p.thresholds[1] },
        { name: "calendar", text: "Business calendar", type: "select", options: [["24x7", "24x7 (always counting)"], ...calendars.items.map((c) => [c.name, c.name])], value: (p) => p.calendar },
        { name: "escalation", text: "Escalation levels", type: "textarea", placeholder: "1: 30", help: "One “level: minutes” a line: the level is due that many working minutes after creation.", value: (p) => p.escalation.map((e) => `${e.level}: ${e.minutes}`).join("\n") },
        { name: "pause_on_blocked", text: "Pause while blocked", type: "checkbox", value: (p) => p.pause_on_blocked },
        { name: "is_active", text: "Active", type: "checkbox", initial: true, value: (p) => p.is_active },
      ],
      toBody: (v) => ({
        name: v.name,
        task_type: v.task_type,
        priority: v.priority,
        customer_tier: v.customer_tier,
        start_minutes: int(v.start_minutes, "Response target"),
        resolve_minutes: int(v.resolve_minutes, "Resolution target"),
        thresholds: [Number(v.warning || 75), Number(v.critical || 95)],
        calendar: v.calendar,
        escalation: parts(v.escalation.replaceAll(",", "\n")).map((line) => {
          const m = /^(\d+)\s*[:=]\s*(\d+)$/.exec(line);
          if (!m) throw new Error(`Escalation levels: “${line}” is not “level: minutes”`);
          return { level: Number(m[1]), minutes: Number(m[2]) };
        }),
        pause_on_blocked: v.pause_on_blocked,
        is_active: v.is_active,
      }),
    }),
  ];
}

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

export async function calendarsSection(body, reload) {
  const calendars = await get("/calendars?page_size=100");
  clear(body, h("h2", {}, "Business calendars"),
    h("p", { class: "muted" }, "The working hours an SLA policy counts in; the time outside them (and on holidays) does not count."),
    editor({
      key: "calendar",
      noun: "calendar",
      path: "/calendars",
      items: calendars.items,
      writable: can("sla_write"),
      reload,
      columns: [
        ["Name", (c) => c.name],
        ["Time zone", (c) => c.timezone],
        ["Working hours", (c) => Object.entries(c.hours).map(([d, spans]) => `${d} ${spans.join(", ")}`).join("; ") || "none"],
        ["Holidays", (c) => String(c.holidays.length)],
        ["Used by", (c) => c.policies.join(", ") || "—"],
      ],
      fields: [
        { name: "name", text: "Calendar name", required: true, value: (c) => c.name },
        { name: "timezone", text: "Time zone", required: true, initial: "UTC", placeholder: "Europe/Berlin", value: (c) => c.timezone },
        { name: "hours", text: "Working hours", type: "textarea", initial: DAYS.slice(0, 5).map((d) => `${d} 09:00-17:00`).join("\n"), help: "One day a line: “mon 09:00-12:00, 13:00-17:00”; a day not listed has no working hours.", value: (c) => Object.entries(c.hours).map(([d, spans]) => `${d} ${spans.join(", ")}`).join("\n") },
        { name: "holidays", text: "Holidays", type: "textarea", placeholder: "2026-12-25", help: "One date (YYYY-MM-DD) a line.", value: (c) => c.holidays.join("\n") },
      ],
      toBody: (v) => {
        const hours = {};
        for (const line of v.hours.split("\n").map((s) => s.trim()).filter(Boolean)) {
          const m = /^([A-Za-z]+)\s+(.+)$/.exec(line);
          if (!m) throw new Error(`Working hours: “${line}” is not “day from-to, …”`);
          hours[m[1].toLowerCase()] = parts(m[2]);
        }
        return { name: v.name, timezone: v.timezone, hours, holidays: parts(v.holidays) };
      },
    }));
}

const TRIGGERS = [["breach", "SLA breached"], ["warning", "SLA warning"], ["created", "task created"]];

function conditionText(conditions) {
  const shown = Object.entries(conditions || {}).filter(([, values]) => values.length);
  return shown.map(([key, values]) => `${label(key)}: ${values.join(", ")}`).join("; ") || "every task";
}

export async function escalationSection(body, reload) {
  const policies = await get("/escalation-policies?page_size=100");
  const condition = (key, text) => ({ name: `only_${key}`, text, placeholder: "any", help: "Comma-separated; empty matches any.", value: (p) => (p.conditions[key] || []).join(", ") });
  clear(body, h("h2", {}, "Escalation policies"),
    editor({
      key: "escalation",
      noun: "escalation policy",
      path: "/escalation-policies",
      items: policies.items,
      writable: can("sla_write"),
      reload,
      columns: [
        ["Name", (p) => p.name],
        ["Trigger", (p) => TRIGGERS.find(([v]) => v === p.trigger)?.[1] ?? p.trigger],
        ["Matches", (p) => conditionText(p.conditions)],
        ["Steps", (p) => p.steps.map((s) => `after ${s.delay_minutes} min → ${s.targets.join(", ")} (${s.channels.join(", ")})`).join("; ")],
        ["Repeat", (p) => (p.repeat ? `${p.repeat} more, every ${p.repeat_interval_minutes ?? "—"} min` : "no")],
        ["State", (p) => (p.is_active ? "active" : "inactive")],
      ],
      fields: [
        { name: "name", text: "Escalation policy name", required: true, value: (p) => p.name },
        { name: "description", text: "Description", value: (p) => p.description },
        { name: "trigger", text: "Starts when", type: "select", options: TRIGGERS, value: (p) => p.trigger },
        condition("priority", "Only priorities"),
        condition("task_type", "Only task types"),
        condition("customer_tier", "Only customer tiers"),
        condition("tags", "Only tags"),
        { name: "steps", text: "Steps", type: "textarea", required: true, initial: "0 | team_lead | email", help: "One step a line: “delay minutes | targets | channels | message”; targets: assignee, team, team_lead, manager, role:<role>, user:<id>; channels: email, slack, webhook, sms.", value: (p) => p.steps.map((s) => [s.delay_minutes, s.targets.join(", "), s.channels.join(", "), s.message].filter((x) => x !== null && x !== undefined).join(" | ")).join("\n") },
        { name: "repeat", text: "Repeat the steps (times)", type: "number", initial: 0, value: (p) => p.repeat },
        { name: "repeat_interval_minutes", text: "Repeat every (minutes)", type: "number", value: (p) => p.repeat_interval_minutes },
        { name: "ack_timeout_minutes", text: "Acknowledgement timeout (minutes)", type: "number", value: (p) => p.ack_timeout_minutes },
        { name: "skip_if_empty", text: "Skip a step without recipients", type: "checkbox", value: (p) => p.skip_if_empty },
        { name: "is_active", text: "Active", type: "checkbox", initial: true, value: (p) => p.is_active },
      ],
      toBody: (v, editing) => {
        // Conditions the form does not show (service, team) are kept as they are.
        const conditions = { ...(editing?.conditions || {}) };
        for (const key of ["priority", "task_type", "customer_tier"]) conditions[key] = parts(v[`only_${key}`]).map((s) => s.toUpperCase());
        conditions.tags = parts(v.only_tags);
        const steps = v.steps.split("\n").map((s) => s.trim()).filter(Boolean).map((line) => {
          const [delay, targets, channels, message] = line.split("|").map((s) => s.trim());
          const step = { delay_minutes: int(delay || "0", "Step delay") ?? 0, targets: parts(targets) };
          if (channels) step.channels = parts(channels);
          if (message) step.message = message;
          return step;
        });
        return {
          name: v.name,
          description: v.description || null,
          trigger: v.trigger,
          conditions,
          steps,
          repeat: int(v.repeat || "0", "Repeat"),
          repeat_interval_minutes: int(v.repeat_interval_minutes, "Repeat every"),
          ack_timeout_minutes: int(v.ack_timeout_minutes, "Acknowledgement timeout"),
          skip_if_empty: v.skip_if_empty,
          is_active: v.is_active,
        };
      },
    }));
}

export async function heartbeatsSection(body, reload) {
  const [monitors, teams] = await Promise.all([get("/heartbeat-monitors?page_size=100"), get("/teams?page_size=100")]);
  app.teams = new Map(teams.items.map((t) => [t.id, t.name]));
  clear(body, h("h2", {}, "Heartbeat monitors"),
    h("p", { class: "muted" }, "A job that stops calling its ping URL on schedule opens an incident. Give a period or a cron schedule."),
    editor({
      key: "monitor",
      noun: "monitor",
      path: "/heartbeat-monitors",
      items: monitors.items,
      writable: can("monitors_write"),
      reload,
      columns: [
        ["Name", (m) => m.name],
        ["Schedule", (m) => (m.cron ? `cron ${m.cron} (${m.timezone})` : `every ${m.period_seconds} s`)],
        ["Grace", (m) => `${m.grace_seconds} s`],
        ["State", (m) => (m.paused ? "paused" : label(m.state))],
        ["Next due", (m) => timeEl(m.next_due_at)],
        ["Ping URL", (m) => h("code", { class: "url" }, m.ping_url)],
      ],
      fields: [
        { name: "name", text: "Monitor name", required: true, value: (m) => m.name },
        { name: "period_seconds", text: "Period (seconds)", type: "number", value: (m) => m.period_seconds },
        { name: "cron", text: "Cron schedule", placeholder: "0 3 * * *", value: (m) => m.cron },
        { name: "timezone", text: "Cron time zone", initial: "UTC", value: (m) => m.timezone },
        { name: "grace_seconds", text: "Grace (seconds)", type: "number", initial: 300, value: (m) => m.grace_seconds },
        { name: "max_run_seconds", text: "Longest run (seconds)", type: "number", value: (m) => m.max_run_seconds },
        { name: "team_id", text: "Team of its incidents", type: "select", options: [["", "No team"], ...[...app.teams].map(([id, name]) => [id, name])], value: (m) => m.team_id || "" },
        { name: "priority", text: "Incident priority", type: "select", options: PRIORITIES.map((p) => [p, label(p)]), initial: "HIGH", value: (m) => m.priority },
        { name: "paused", text: "Paused", type: "checkbox", value: (m) => m.paused },
      ],
      toBody: (v) => ({
        name: v.name,
        period_seconds: int(v.period_seconds, "Period"),
        cron: v.cron || null,
        timezone: v.timezone || "UTC",
        grace_seconds: int(v.grace_seconds || "300", "Grace"),
        max_run_seconds: int(v.max_run_seconds, "Longest run"),
        team_id: v.team_id || null,
        priority: v.priority,
        paused: v.paused,
      }),
    }));
}
