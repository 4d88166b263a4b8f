"""Workflows: a document is fetched, split into chunks, each chunk embedded in parallel, and
the index built from every embedding once the last one is done (a chord inside a chain);
then what a failed member does to its chord, and an abort.

Run: python examples/workflows.py               (docs/workflows.md)
"""

from __future__ import annotations

import asyncio

from conveyor import Conveyor, TaskFailed, chain, chord, group

app = Conveyor("memory://", fetch_wait=0.1, log_tasks=False)


@app.task
async def fetch(url: str) -> str:
    return f"Conveyor runs chains, groups and chords on every broker ({url})."


@app.task
async def split(text: str) -> list[str]:
    return text.split()


@app.task
async def embed(chunk: str) -> list[float]:
    if chunk == "poison":
        raise ValueError(f"cannot embed {chunk!r}")
    return [float(len(chunk)), float(sum(map(ord, chunk)) % 97)]


@app.task
async def build_index(vectors: list[list[float]]) -> str:
    return f"index of {len(vectors)} vectors"


@app.task
async def slow(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


async def main() -> None:
    async with app, app.worker(concurrency=20):
        text = await (await fetch.kiq("https://example.com/doc")).get(timeout=5)
        chunks = await (await split.kiq(text)).get(timeout=5)

        # fan out over the chunks, fan in to one callback: it receives every vector, in
        # the chunks' order, once the last one is embedded
        index = await chord((embed.s(c) for c in chunks), build_index.s()).kiq()
        print("chord:", await index.get(timeout=10))

        # the same as one workflow: a group inside a chain receives the previous result
        # in each member (here, the whole text: each member embeds it)
        flow = await chain(
            fetch.s("https://example.com/doc"), group(embed.s(), embed.s()), build_index.s()
        ).kiq()
        print("chain:", await flow.get(timeout=10))
        state = await flow.status()
        print("status:", state.status, "-", state.name, "-", len(state.tasks), "tasks")

        # a member that fails fails its chord at once: the callback never runs
        broken = await chord([embed.s("fine"), embed.s("poison")], build_index.s()).kiq()
        try:
            await broken.get(timeout=10)
        except TaskFailed as exc:
            print("failed:", exc.error.message.split(": ", 1)[1])

        # abort: the running members are cancelled, the rest never run, nor the callback
        long = await chord([slow.s(30.0) for _ in range(3)], build_index.s()).kiq()
        await asyncio.sleep(0.2)  # sleep: the members start
        print("aborted:", await long.abort(), "tasks stopped;", (await long.status()).status)


if __name__ == "__main__":
    asyncio.run(main())
