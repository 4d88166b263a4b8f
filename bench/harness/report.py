"""Turn raw run results (bench/out/raw-*.json) into bench/RESULTS.md."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any


Raw = dict[str, Any]


def _fmt_rate(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _fmt_ms(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def _fmt(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


class Results:
    """Median over successful runs, grouped by (peer, kind, cell)."""

    def __init__(self, raw: Raw) -> None:
        self.raw = raw
        self.meta: dict[str, dict[str, Any]] = raw["adapters"]
        self.groups: dict[tuple[str, str, tuple[Any, ...]], list[dict[str, Any]]] = \
            defaultdict(list)
        for r in raw["results"]:
            cell = r["cell"]
            key = (r["peer"], r["kind"], self._cell_key(cell))
            self.groups[key].append(r)

    @staticmethod
    def _cell_key(cell: dict[str, Any]) -> tuple[Any, ...]:
        return (cell.get("workload", "latency"), cell["procs"], cell["concurrency"],
                cell["results"])

    def runs(self, peer: str, kind: str, workload: str, procs: int, conc: int | None,
             results: bool) -> list[dict[str, Any]]:
        return self.groups.get((peer, kind, (workload, procs, conc, results)), [])

    def median(self, runs: list[dict[str, Any]], metric: str) -> float | None:
        vals = [r["metrics"][metric] for r in runs if r["ok"] and metric in r["metrics"]]
        return statistics.median(vals) if vals else None

    def drain(self, peer: str, workload: str, procs: int, conc: int | None,
              results: bool, metric: str = "drain_rate") -> float | None:
        return self.median(self.runs(peer, "drain", workload, procs, conc, results), metric)

    def ok_count(self, runs: list[dict[str, Any]]) -> str:
        ok = sum(1 for r in runs if r["ok"])
        return "" if ok == len(runs) else f" ({ok}/{len(runs)} ok)"

    def cell_text(self, peer: str, workload: str, procs: int, conc: int | None,
                  results: bool) -> str:
        runs = self.runs(peer, "drain", workload, procs, conc, results)
        if not runs:
            return "—"
        if not any(r["ok"] for r in runs):
            return "**failed**"
        text = _fmt_rate(self.median(runs, "drain_rate")) + self.ok_count(runs)
        if any(r["info"].get("capped") for r in runs if r["ok"]):
            text += " ‡"
        n = runs[0]["cell"]["n"]
        if n != self.raw["config"]["n"]:
            text += f" (n={n:,})"
        return text

    def results_modes(self, peer: str) -> list[bool]:
        modes = {r["cell"]["results"] for r in self.raw["results"] if r["peer"] == peer}
        return sorted(modes)

    def peers(self) -> list[str]:
        return [p for p in self.meta if not self.meta[p]["is_ceiling"]]

    def ceiling(self) -> str | None:
        return next((p for p in self.meta if self.meta[p]["is_ceiling"]), None)


def _table(header: list[str], rows: Iterable[list[str]], align: str = "") -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    seps = [":---" if a == "l" else "---:" for a in align]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(seps) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def merge(raws: list[Raw]) -> Raw:
    """The first raw result file, with every peer found in a later file replaced by that
    file's data (e.g. one peer re-run, or Conveyor's row added, without rerunning all)."""
    base = raws[0]
    for extra in raws[1:]:
        peers = set(extra["adapters"])
        base["results"] = [r for r in base["results"] if r["peer"] not in peers] \
            + extra["results"]
        base["probe"] = [p for p in base.get("probe", []) if p["peer"] not in peers] \
            + extra.get("probe", [])
        for key in ("adapters", "versions", "setup_errors"):
            # Replace in place, so the report keeps the base file's peer order.
            merged = {p: extra[key].get(p, v) for p, v in base[key].items()
                      if p not in peers or p in extra[key]}
            merged.update({p: v for p, v in extra[key].items() if p not in merged})
            base[key] = merged
        base["config"].setdefault("merged", []).append(
            {"command": extra["config"]["command"], "date": extra["machine"].get("date", "?"),
             "peers": sorted(peers)}
        )
    return base


def render(raw: Raw, analysis: Path | None = None) -> str:
    """The Markdown report of ``raw``. Hand-written ``analysis`` (a file naming the runs
    it describes) is pasted in only when given: a new run never inherits an old one's
    conclusions."""
    res = Results(raw)
    cfg = raw["config"]
    facts = raw["machine"]
    ceil = res.ceiling()
    n = cfg["n"]
    L: list[str] = []
    generated = f"`{cfg['command']}` on {facts.get('date', '?')}"
    for m in cfg.get("merged", []):
        generated += (f", with {', '.join(m['peers'])} from `{m['command']}` on {m['date']} "
                      "(merged with `run.py --render FIRST.json,SECOND.json`)")
    L += [
        "# Conveyor benchmarks: the peers",
        "",
        "Generated by " + generated + ". "
        "Do not edit by hand: rerun the command (see [README.md](README.md) for what each "
        "number means and how it is measured).",
        "",
        *([] if "conveyor" in raw["adapters"] else [
            "> Draft: Conveyor's own row is added once its Redis broker exists "
            "(`bench/peers/conveyor.py`).",
            "",
        ]),
        *([analysis.read_text().rstrip(), ""] if analysis is not None else []),
        f"Workload: a pre-enqueued backlog of {n:,} tasks, each a no-op or a 10 ms sleep; "
        f"median of {cfg['runs']} run(s) per cell, every run verified exactly-once "
        "(a run that fails the check, crashes or hits the time limit "
        f"({cfg['time_limit']:.0f} s) is counted as failed and left out of the median). "
        "Drain rate = backlog ÷ (time from starting the first worker process to the last "
        "task finishing): worker start-up is included.",
        "",
    ]
    if cfg.get("drain_cap"):
        L += [f"‡ = time-capped: the drain was stopped {cfg['drain_cap']:g} s after the first "
              "worker process started and rated on the tasks done by then (exactly-once "
              "checked on those), to keep the full run near 40 minutes. `--drain-cap 0` "
              "drains every backlog to the end.", ""]
    if cfg.get("quick"):
        L += ["> **Quick mode** (smoke test): small backlog, one run. Not a result.", ""]

    # Machine -------------------------------------------------------------------
    L += ["## Machine", ""]
    L += _table(["", ""], ([k, v] for k, v in facts.items()), "ll")
    L += [""]

    # Ceiling -------------------------------------------------------------------
    ceil_rates: dict[int, float | None] = {}
    if ceil:
        L += ["## The raw Redis ceiling", ""]
        L += [
            "A bare asyncio loop on redis-py + hiredis, no task queue: pipelined `XADD` (100 "
            "per round trip) to enqueue; `XREADGROUP COUNT 100`, then one pipeline of `XACK` "
            "+ `XDEL` per batch to drain. Each message is recorded in the same ledger as a "
            "task, so it is measured exactly like the libraries. Every library below is "
            "stated as a percentage of this.",
            "",
        ]
        rows = []
        enq = res.median(res.runs(ceil, "drain", "noop", 1, 100, False)
                         + res.runs(ceil, "drain", "noop", 2, 100, False), "enqueue_rate")
        for procs in cfg["procs"]:
            runs = res.runs(ceil, "drain", "noop", procs, 100, False)
            ceil_rates[procs] = res.median(runs, "steady_rate")
            rows.append([
                f"{procs} process{'es' if procs > 1 else ''}",
                _fmt_rate(res.median(runs, "drain_rate")) + res.ok_count(runs),
                _fmt_rate(ceil_rates[procs]),
                _fmt(res.median(runs, "startup_s"), 2),
                _fmt(res.median(runs, "cpu_ms_per_task"), 3),
            ])
        L += [f"Enqueue (pipelined `XADD`): **{_fmt_rate(enq)} msgs/s**.", ""]
        L += _table(["consumers", "drain msgs/s (incl. start-up)",
                     "steady msgs/s (the ceiling)", "start-up s", "consumer CPU ms/msg"], rows)
        lat = res.runs(ceil, "latency", "latency", 1, 100, False)
        if any(r["ok"] for r in lat):
            L += ["", f"Idle enqueue-to-read latency: p50 {_fmt_ms(res.median(lat, 'p50_ms'))} ms, "
                      f"p99 {_fmt_ms(res.median(lat, 'p99_ms'))} ms."]
        L += [""]

    def pct(peer: str, results: bool, procs: int) -> str:
        if res.meta[peer]["backend"] != "redis":
            return "n/a"
        rate = res.drain(peer, "noop", procs, 100, results, "steady_rate")
        base = ceil_rates.get(procs)
        return "—" if rate is None or not base else f"{100 * rate / base:.0f}%"

    # Headline --------------------------------------------------------------------
    L += ["## No-op backlog at concurrency 100", ""]
    L += [
        "Per worker process concurrency 100 (what that means per library: see *Setup* below). "
        "Latency: enqueue-to-start on an idle queue, one warm worker process at concurrency "
        f"100, {cfg['latency_n']} tasks enqueued one at a time with random "
        f"{cfg['latency_gap_ms'] / 2:g} to {cfg['latency_gap_ms'] * 1.5:g} ms gaps. RSS: peak "
        "resident memory of a process that ran tasks (1 worker process). CPU: worker-side "
        "CPU time per task (1 worker process, all its processes, start-up excluded). "
        "% of ceiling: the library's steady rate (first task start to last task end) over "
        "the raw loop's, with the same number of processes; the raw loop starts in ~0.15 s, "
        "so comparing drain rates would flatter the libraries.",
        "",
    ]
    rows = []
    for peer in res.peers():
        meta = res.meta[peer]
        if "noop" not in meta["workloads"]:
            continue
        for results in res.results_modes(peer):
            if not res.runs(peer, "drain", "noop", 1, 100, results) and \
                    not res.runs(peer, "drain", "noop", 2, 100, results):
                continue
            lat = res.runs(peer, "latency", "latency", 1, 100, results)
            enq_runs = [r for k, v in res.groups.items()
                        if k[0] == peer and k[1] == "drain" and k[2][3] == results for r in v]
            rows.append([
                meta["label"],
                "yes" if results else "no",
                _fmt_rate(res.median(enq_runs, "enqueue_rate")),
                res.cell_text(peer, "noop", 1, 100, results),
                res.cell_text(peer, "noop", 2, 100, results),
                f"{pct(peer, results, 1)} / {pct(peer, results, 2)}"
                if res.meta[peer]["backend"] == "redis" else "n/a (not Redis)",
                f"{_fmt_ms(res.median(lat, 'p50_ms'))} / {_fmt_ms(res.median(lat, 'p99_ms'))}"
                if any(r["ok"] for r in lat) else ("failed" if lat else "—"),
                _fmt(res.drain(peer, "noop", 1, 100, results, "rss_task_proc_mib"), 0),
                _fmt(res.drain(peer, "noop", 1, 100, results, "cpu_ms_per_task"), 2),
            ])
    L += _table(["library", "results stored", "enqueue tasks/s", "drain jobs/s, 1 proc",
                 "drain jobs/s, 2 procs", "% of ceiling (1p / 2p)", "latency p50 / p99 ms",
                 "RSS MiB", "CPU ms/task"], rows, "llrrrrrrr")
    L += [""]

    # Sleep and defaults ----------------------------------------------------------
    L += ["## 10 ms I/O backlog and library defaults", ""]
    L += [
        "Drain jobs/s (median). The 10 ms tasks `await asyncio.sleep(0.01)` (sync libraries: "
        "see *Setup*); their ideal rate is processes x concurrency / 10 ms. Where that ideal "
        f"would need more than {cfg['sleep_budget']:.0f} s for {n:,} tasks, the backlog is "
        "cut to fit (shown as n=…).",
        "",
    ]
    rows = []
    for peer in res.peers():
        meta = res.meta[peer]
        base = min(res.results_modes(peer), default=False)
        for conc in (100, None):
            if conc is None and meta["default_concurrency"] == 100:
                continue
            cells = [res.cell_text(peer, w, p, conc, base)
                     for w in ("noop", "sleep") for p in (1, 2)]
            if all(c == "—" for c in cells):
                continue
            c_eff = conc or meta["default_concurrency"]
            rows.append([
                meta["label"],
                "100" if conc else f"default: {meta['default_concurrency']}",
                *cells,
                f"{100 * c_eff:,} / {200 * c_eff:,}" if "sleep" in meta["workloads"] else "—",
            ])
    L += _table(["library", "concurrency", "no-op, 1 proc", "no-op, 2 procs",
                 "10 ms, 1 proc", "10 ms, 2 procs", "10 ms ideal (1p / 2p)"], rows, "llrrrrr")
    L += [""]

    # Everything ------------------------------------------------------------------
    L += ["## All cells", "",
          "Medians. *steady*: backlog ÷ (first task start → last task end), i.e. without "
          "worker start-up; *start-up*: first worker process start → first task start; RSS "
          "*task proc*: peak RSS of the largest process that ran tasks; *all*: peak RSS of "
          "every worker-side process (supervisors, pool children) ÷ processes.", ""]
    rows = []
    for (peer, kind, key), runs in res.groups.items():
        if kind != "drain":
            continue
        workload, procs, conc, results = key
        meta = res.meta[peer]
        rows.append([
            meta["label"], workload, str(procs),
            str(conc) if conc is not None else f"default ({meta['default_concurrency']})",
            "yes" if results else "no",
            f"{_fmt(res.median(runs, 'done'), 0)} of {runs[0]['cell']['n']:,}"
            if any(r["info"].get("capped") for r in runs) else f"{runs[0]['cell']['n']:,}",
            f"{sum(r['ok'] for r in runs)}/{len(runs)}",
            _fmt_rate(res.median(runs, "drain_rate")),
            _fmt_rate(res.median(runs, "steady_rate")),
            _fmt(res.median(runs, "startup_s"), 2),
            _fmt_rate(res.median(runs, "enqueue_rate")),
            _fmt(res.median(runs, "cpu_ms_per_task"), 3),
            _fmt(res.median(runs, "rss_task_proc_mib"), 0),
            _fmt(res.median(runs, "rss_total_mib"), 0),
        ])
    L += _table(["library", "workload", "procs", "concurrency", "results", "tasks done", "ok runs",
                 "drain jobs/s", "steady jobs/s", "start-up s", "enqueue/s", "CPU ms/task",
                 "RSS task proc", "RSS all"], rows, "llrrlrrrrrrrrr")
    L += [""]

    # Round trips -----------------------------------------------------------------
    if raw.get("probe"):
        L += ["## Redis traffic per job", "",
              "From a separate, untimed probe run (no-op tasks, 1 worker process, concurrency "
              "100) with `MONITOR` on, counting the commands sent to the benchmark DB. "
              "Commands run inside Lua scripts are counted apart. Read events: Redis's "
              "`total_reads_processed` delta over the same window, minus the idle rate "
              "measured just before; each is one socket read by the server, which "
              "approximates client round trips (a pipeline is usually one read).", ""]
        rows = []
        for p in raw["probe"]:
            if p.get("error"):
                rows.append([res.meta[p["peer"]]["label"], "yes" if p["results"] else "no",
                             "failed: " + p["error"][:80], "", "", "", "", ""])
                continue
            rows.append([
                res.meta[p["peer"]]["label"], "yes" if p["results"] else "no",
                _fmt(p["enqueue_cmds_per_job"], 3), _fmt(p.get("enqueue_lua_cmds_per_job"), 2),
                _fmt(p["worker_cmds_per_job"], 2),
                _fmt(p["worker_lua_cmds_per_job"], 2), _fmt(p["worker_reads_per_job"], 2),
                ", ".join(f"{k} {v:.2f}" for k, v in p["worker_top"].items()),
            ])
        L += _table(["library", "results", "enqueue cmds/job", "+ in Lua", "worker cmds/job",
                     "+ in Lua", "worker read events/job ≈ round trips", "worker commands/job"],
                    rows, "llrrrrrl")
        L += [""]

    # Failures ----------------------------------------------------------------------
    failed = [r for r in raw["results"] if not r["ok"]]
    L += ["## Failures", ""]
    if raw["setup_errors"]:
        L += ["Peers that could not be installed or started:", ""]
        L += [f"- **{peer}**: {err}" for peer, err in raw["setup_errors"].items()]
        L += [""]
    if failed:
        L += ["Failed runs (not counted):", ""]
        for r in failed:
            cell = r["cell"]
            first = r["error"].strip().splitlines()[0][:300] if r["error"].strip() else "?"
            L.append(
                f"- {res.meta[r['peer']]['label']}, {r['kind']} "
                f"{cell.get('workload', '')} procs={cell['procs']} "
                f"concurrency={cell['concurrency'] or 'default'} "
                f"results={'yes' if cell['results'] else 'no'}: {first}"
            )
        L += [""]
    if not failed and not raw["setup_errors"]:
        L += ["None.", ""]

    # Setup -------------------------------------------------------------------------
    L += ["## Setup per library", ""]
    for peer, meta in res.meta.items():
        versions = raw["versions"].get(peer, {})
        L += [f"### {meta['label']}", ""]
        if versions:
            L.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
        L.append(f"- backend: {meta['backend']}; concurrency counts {meta['concurrency_unit']}"
                 f", library default {meta['default_concurrency']}")
        L.append(f"- enqueue: {meta['enqueue_api']}")
        L.append(f"- 10 ms task: {meta['sleep_impl']}")
        if meta["results_note"]:
            L.append(f"- results: {meta['results_note']}")
        L += [f"- {note}" for note in meta["notes"]]
        L.append("")
    return "\n".join(L).rstrip() + "\n"
