"""Alert integrations: monitoring systems post alerts; OpsFlow keeps one incident per alert."""
