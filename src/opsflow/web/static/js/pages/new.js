// Create a task or declare an incident (POST /tasks); the types offered are those the role
// may create.
import { request } from "../api.js";
import { clear, h, label } from "../dom.js";
import { app, can } from "../state.js";
import { PRIORITIES, TIERS } from "./tasks.js";

export function newTaskPage(main) {
  const types = [];
  if (can("incident_declare")) types.push("INCIDENT");
  if (can("task_create")) types.push("TASK");
  const error = h("p", { class: "error", role: "alert" });
  const field = (id, text, control) => h("div", { class: "field" }, h("label", { for: id }, text), control);
  const options = (values, current) => values.map((v) => h("option", { value: v, selected: v === current }, label(v)));
  const form = h(
    "form",
    {
      class: "card",
      onsubmit: async (event) => {
        event.preventDefault();
        error.textContent = "";
        const data = new FormData(form);
        const body = {
          title: data.get("title"),
          task_type: data.get("task_type"),
          priority: data.get("priority"),
          customer_tier: data.get("customer_tier"),
          tags: String(data.get("tags") || "").split(",").map((t) => t.trim()).filter(Boolean),
        };
        if (data.get("description")) body.description = data.get("description");
        if (data.get("team_id")) body.team_id = data.get("team_id");
        try {
          const task = await request("POST", "/tasks", { body });
          location.hash = `#/tasks/${task.id}`;
        } catch (err) {
          error.textContent = err.message;
        }
      },
    },
    h("h1", {}, "New task"),
    field("n-title", "Title", h("input", { id: "n-title", name: "title", required: true, maxlength: 200 })),
    field("n-type", "Type", h("select", { id: "n-type", name: "task_type" }, options(types, types[0]))),
    field("n-priority", "Priority", h("select", { id: "n-priority", name: "priority" }, options(PRIORITIES, "MEDIUM"))),
    field("n-tier", "Customer tier", h("select", { id: "n-tier", name: "customer_tier" }, options(TIERS, "STANDARD"))),
    app.teams.size
      ? field("n-team", "Team", h("select", { id: "n-team", name: "team_id" }, h("option", { value: "" }, "Default team"), [...app.teams].map(([id, name]) => h("option", { value: id }, name))))
      : null,
    field("n-tags", "Tags (comma-separated)", h("input", { id: "n-tags", name: "tags" })),
    field("n-desc", "Description (Markdown)", h("textarea", { id: "n-desc", name: "description", rows: 5 })),
    h("button", { type: "submit" }, "Create"),
    error,
  );
  clear(main, form);
}
