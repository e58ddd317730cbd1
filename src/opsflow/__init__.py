"""OpsFlow: an operations backend for tasks, incidents and their SLAs."""

__version__ = "0.1.0"
