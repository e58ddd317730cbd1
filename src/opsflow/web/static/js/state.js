// The signed-in user (GET /auth/me, with its permissions), the team names, and the
// permission check the pages use to show only the actions the role allows.
export const app = { me: null, teams: new Map(), cleanup: [] };

// What the caller's role allows, by permission name (GET /auth/me: permission -> reach).
export function can(permission, task = null) {
  const reach = app.me?.permissions?.[permission];
  if (!reach) return false;
  if (reach === "all" || !task) return true;
  if (reach === "own_team") return Boolean(app.me.team_id) && task.team_id === app.me.team_id;
  if (reach === "assignee") {
    const ids = [task.assigned_to?.id, ...(task.additional_assignees || []).map((u) => u.id)];
    return ids.includes(app.me.id);
  }
  return false;
}

export function teamName(id) {
  if (!id) return "—";
  return app.teams.get(id) ?? id.slice(0, 8);
}

