"""examples/nats_app.py with results on Redis (REDIS_URL) keeps them under its own prefix
and deletes them at the end, as it does its NATS streams and buckets. Run in this
process: the subprocess run of tests/docs/test_examples.py covers NATS alone."""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType

import nats
import pytest
import redis.asyncio as aioredis

from tests.brokers.conftest import NATS_URL, REDIS_URL, service_unavailable
from tests.docs.programs import ROOT

pytestmark = [pytest.mark.service("nats"), pytest.mark.service("redis")]


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nats_app_example", ROOT / "examples/nats_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_nats_example_keeps_redis_results_under_its_prefix_and_deletes_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        nc = await nats.connect(NATS_URL, connect_timeout=2, max_reconnect_attempts=0)
    except Exception as exc:
        service_unavailable(f"NATS at {NATS_URL} is unreachable: {exc}")
    await nc.close()
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        service_unavailable(f"Redis at {REDIS_URL} is unreachable: {exc}")
    monkeypatch.setenv("NATS_URL", NATS_URL)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("RUN_MODE", "both")
    monkeypatch.delenv("NATS_PREFIX", raising=False)
    try:
        example = _load_example()
        assert f"prefix={example.PREFIX}" in example.RESULTS_URL
        await example.main()
        out = capsys.readouterr().out
        assert "result: sent to ada@example.com" in out
        found = re.search(r"redis result keys deleted: (\d+)", out)
        assert found is not None, out
        assert int(found[1]) > 0, "the results did not go to Redis under the example's prefix"
        left = [k async for k in client.scan_iter(match=f"*{example.PREFIX}*")]
        assert left == []
    finally:
        await client.aclose()
