// The dashboard: a hash router (#/tasks?status=…, #/tasks/<id>, #/new, #/login), the header
// (navigation, user, live state, log out) and the signed-in user with its permissions.
import { ApiError, currentSession, get, logout, onSession } from "./api.js";
import { clear, h } from "./dom.js";
import * as live from "./live.js";
import { adminAllowed, adminPage } from "./pages/admin.js";
import { dashboardPage } from "./pages/dashboard.js";
import { loginPage } from "./pages/login.js";
import { newTaskPage } from "./pages/new.js";
import { reportsPage } from "./pages/reports.js";
import { taskPage } from "./pages/task.js";
import { tasksPage } from "./pages/tasks.js";
import { app, can } from "./state.js";

const main = document.getElementById("main");
const top = document.getElementById("top");
function parseHash() {
  const raw = location.hash.replace(/^#/, "");
  const [path, search = ""] = raw.split("?");
  return { path, params: new URLSearchParams(search) };
}

function renderHeader() {
  if (!app.me) {
    clear(top, h("span", { class: "brand" }, "OpsFlow"));
    return;
  }
  const status = h("span", { id: "live-status", class: "live", role: "status", "aria-live": "polite" });
  live.onState((state) => {
    status.dataset.state = state;
    status.textContent = { live: "Live", connecting: "Connecting…", reconnecting: "Reconnecting…", offline: "Offline" }[state];
  });
  const links = [];
  if (can("reports_read")) links.push(h("a", { href: "#/dashboard" }, "Dashboard"));
  links.push(h("a", { href: "#/tasks" }, "Tasks"));
  if (can("reports_read")) links.push(h("a", { href: "#/reports" }, "Reports"));
  if (adminAllowed()) links.push(h("a", { href: "#/admin" }, "Admin"));
  if (can("task_create") || can("incident_declare")) links.push(h("a", { href: "#/new" }, "New task"));
  links.push(h("a", { href: "/api/v1/docs" }, "API"));
  clear(
    top,
    h("a", { class: "brand", href: "#/tasks" }, "OpsFlow"),
    h("nav", { "aria-label": "Main" }, links),
    status,
    h("span", { class: "who" }, `${app.me.full_name || app.me.username} · ${app.me.role.replace("_", " ")}`),
    h("button", { type: "button", class: "link", onclick: async () => { await logout(); } }, "Log out"),
  );
}

async function loadMe() {
  app.me = await get("/auth/me");
  try {
    const teams = await get("/teams?page_size=100");
    app.teams = new Map(teams.items.map((t) => [t.id, t.name]));
  } catch {
    app.teams = new Map();
  }
}

let rendering = 0;
async function render() {
  for (const fn of app.cleanup.splice(0)) fn();
  const ticket = ++rendering;
  const { path, params } = parseHash();
  if (!currentSession()) {
    app.me = null;
    live.stop();
    renderHeader();
    if (path !== "/login") {
      sessionStorage.setItem("opsflow.after", location.hash || "#/");
      location.hash = "/login";
      return;
    }
    loginPage(main);
    return;
  }
  try {
    if (!app.me) {
      await loadMe();
      renderHeader();
      live.start();
    }
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return; // the session listener re-renders
    clear(main, h("p", { class: "error", role: "alert" }, `Could not load your account: ${error.message}`));
    return;
  }
  if (ticket !== rendering) return;
  if (path === "/login") {
    location.hash = sessionStorage.getItem("opsflow.after") || "#/";
    sessionStorage.removeItem("opsflow.after");
    return;
  }
  if (path === "" || path === "/") {
    location.hash = can("reports_read") ? "#/dashboard" : "#/tasks"; // the start page
    return;
  }
  const match = path.match(/^\/tasks\/([0-9a-f-]{36})$/);
  if (match) taskPage(main, match[1]);
  else if (path === "/new" && (can("task_create") || can("incident_declare"))) newTaskPage(main);
  else if (path === "/tasks") tasksPage(main, params);
  else if (path === "/dashboard" && can("reports_read")) dashboardPage(main);
  else if (path === "/reports" && can("reports_read")) reportsPage(main, params);
  else if (path === "/admin" && adminAllowed()) adminPage(main, params);
  else clear(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/tasks" }, "Back to the tasks")));
  main.focus({ preventScroll: true });
}

onSession((session) => {
  const signedIn = Boolean(session);
  if (signedIn !== Boolean(app.me)) {
    app.me = null;
    render();
  }
});
window.addEventListener("hashchange", render);
render();
