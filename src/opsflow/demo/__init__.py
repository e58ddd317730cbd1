"""Demo data: a month of realistic tasks and incidents written through the real rules.

`opsflow demo` fills an empty database. Every task is played through the functions the
services and the SLA engine use (task creation, the status machine, the clock transitions,
the engine's firing of thresholds, audit rows and outbox events), in memory, and the rows
they produce are written in bulk.
"""
