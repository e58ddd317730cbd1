"""Real time: the WebSocket stream of task, SLA and escalation events."""
