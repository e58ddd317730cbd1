"""Request dependencies for routes under a task: the task itself, or 404."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from opsflow.deps import SessionDep
from opsflow.errors import NotFound, declares
from opsflow.models.task import Task
from opsflow.tasks import service


@declares(NotFound)
async def existing_task(task_id: uuid.UUID, session: SessionDep) -> Task:
    """The task named in the path (cancelled ones included), or 404. Put it after the
    caller's permission dependency, so that an unauthorised caller learns nothing."""
    return await service.get_task(session, task_id)


ExistingTask = Annotated[Task, Depends(existing_task)]
