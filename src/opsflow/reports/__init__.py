"""Reports: SLA summary, team performance, incidents, the dashboard and SLA compliance."""
