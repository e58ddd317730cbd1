"""Heartbeat monitors: jobs that check in, and the incidents opened when they stop."""
