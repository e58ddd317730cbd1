"""Garbage-collector settings for a long-running server process.

CPython's cyclic collector scans a generation each time allocations outnumber frees by a
threshold (700 by default), and the whole heap whenever the long-lived objects grew by a
quarter. A server holding thousands of WebSockets keeps a few hundred tracked objects per
connection (tasks, protocol and parser state, queues), so while sockets keep opening the
collector keeps scanning a heap that only grows: measured on `bench/websocket.py`, more
than a quarter of the wall time of opening 3,000 sockets went to collections, most of it in
full ones. After start-up the server therefore freezes what start-up built (modules, the
application, ORM mappings: never garbage, now never scanned again) and collects young
objects less often; cycles are still found, in larger and fewer passes.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 10)


def tune_for_server() -> None:
    gc.collect()  # start-up's own garbage goes now, so none of it is frozen
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
