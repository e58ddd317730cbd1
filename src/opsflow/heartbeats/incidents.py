"""Opening and resolving a monitor's INCIDENT, through the task rules (so the task is
audited, evented and gets its SLA clocks like any other).

A monitor has at most one open incident: `open_task_id` points at it until a success
resolves it. An incident someone closed by hand no longer counts as open, so the next
failure opens a new one. The engine receives :func:`open_incident` from the composition
root rather than importing the task service.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from opsflow.auth.principal import SYSTEM_ACTOR_ID, Principal
from opsflow.context import AppContext
from opsflow.models.enums import ActorType, Priority, Role, TaskStatus, TaskType
from opsflow.models.heartbeat import HeartbeatMonitor
from opsflow.models.task import Task
from opsflow.tasks import service as tasks
from opsflow.tasks.lifecycle import OPEN
from opsflow.tasks.schemas import TaskCreate

SOURCE = "heartbeat"
ACTOR_NAME = "heartbeat-monitor"


def monitor_actor(monitor: HeartbeatMonitor) -> Principal:
    """The system, acting for the monitor's creator (recorded as the incidents' creator)."""
    return Principal(
        actor_type=ActorType.SYSTEM,
        id=SYSTEM_ACTOR_ID,
        name=ACTOR_NAME,
        role=Role.ADMIN,
        on_behalf_of=monitor.created_by,
    )


async def _open_task(session: AsyncSession, monitor: HeartbeatMonitor) -> Task | None:
    if monitor.open_task_id is None:
        return None
    task = await session.get(Task, monitor.open_task_id, with_for_update=False)
    if task is None or TaskStatus(task.status) not in OPEN:
        monitor.open_task_id = None
        return None
    return task


async def open_incident(
    session: AsyncSession, ctx: AppContext, monitor: HeartbeatMonitor, reason: str
) -> bool:
    """Open the monitor's incident unless one is open; True when it opened one."""
    if await _open_task(session, monitor) is not None:
        return False
    monitor.incident_count += 1
    data = TaskCreate(
        title=f"Heartbeat monitor {monitor.name!r}: {reason}"[:500],
        description=(
            f"The heartbeat monitor {monitor.name} ({monitor.id}) reported: {reason}. "
            "The next successful signal resolves this incident."
        ),
        task_type=TaskType.INCIDENT,
        priority=Priority(monitor.priority),
        team_id=monitor.team_id,
        tags=["heartbeat"],
        metadata={"heartbeat_monitor_id": str(monitor.id), "reason": reason},
    )
    external = tasks.ExternalRef(SOURCE, f"{monitor.id}:{monitor.incident_count}")
    task = await tasks.create_task(session, ctx, monitor_actor(monitor), data, external)
    monitor.open_task_id = task.id
    return True


async def resolve_incident(
    session: AsyncSession, ctx: AppContext, monitor: HeartbeatMonitor
) -> bool:
    """Complete the monitor's open incident, if any; True when it completed one."""
    task = await _open_task(session, monitor)
    if task is None:
        return False
    actor = monitor_actor(monitor)
    command = tasks.TaskCommand(session, ctx, actor, task.id)
    if TaskStatus(task.status) in {TaskStatus.CREATED, TaskStatus.ASSIGNED}:
        await tasks.start_task(command)
    await tasks.complete_task(command, "Resolved by a successful heartbeat signal")
    monitor.open_task_id = None
    return True
