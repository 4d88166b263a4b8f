"""The orchestrator side of the benchmark harness (standard library only)."""
