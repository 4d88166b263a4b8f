"""Execution: fetching (consumer), running one delivery (executor), lease renewal on a
thread (lease), sync-code runners, and the multi-process supervisor."""

from conveyor.worker.consumer import Worker as Worker

__all__ = ["Worker"]
