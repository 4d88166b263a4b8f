#!/usr/bin/env python3
"""Conveyor benchmark harness: run the peer task queues, same Redis, same workload, same run.

    python bench/run.py --runs 3 --out bench/RESULTS.md     # the full run
    python bench/run.py --quick                             # smoke test (2,000 tasks, 1 run)
    python bench/run.py --quick --peers taskiq,arq          # some peers only
    python bench/run.py --render bench/out/raw-....json --out bench/RESULTS.md

Standard library only: each peer runs in its own virtualenv under bench/.venvs/<peer>,
which this script creates and installs on first use. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from harness.adapter import Adapter  # noqa: E402
from harness.env import (  # noqa: E402
    SetupError,
    choose_python,
    ensure_venv,
    find_pythons,
    machine_facts,
    peer_versions,
)
from harness.report import merge, render  # noqa: E402
from harness.runner import SLEEP_SECONDS, Cell, Options, PeerRunner, RunResult  # noqa: E402
from peers import discover  # noqa: E402

T_START = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T_START:7.1f}s] {msg}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="runs per cell; the median is reported")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: --n 2000 --runs 1 --latency-n 50 --time-limit 60")
    p.add_argument("--peers", default="", help="comma-separated adapter names (default: all)")
    p.add_argument("--skip", default="", help="comma-separated adapter names to leave out")
    p.add_argument("--n", type=int, default=20_000, help="backlog size (tasks)")
    p.add_argument("--workloads", default="noop,sleep")
    p.add_argument("--procs", default="1,2", help="worker process counts")
    p.add_argument("--concurrency", default="100,default",
                   help="per-process concurrency values; 'default' = the library's default")
    p.add_argument("--results", choices=("both", "off", "on"), default="both",
                   help="'both': also run results-stored cells (no-op, concurrency 100) for "
                        "libraries that can store results or not")
    p.add_argument("--sleep-budget", type=float, default=10.0,
                   help="cut 10 ms backlogs whose ideal drain time exceeds this (seconds)")
    p.add_argument("--latency-n", type=int, default=200)
    p.add_argument("--latency-gap-ms", type=float, default=10.0)
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--probe", action="store_true",
                   help="also count Redis commands per job with MONITOR (an untimed run)")
    p.add_argument("--time-limit", type=float, default=180.0,
                   help="seconds per run step; a run that hits it fails")
    p.add_argument("--drain-cap", type=float, default=10.0,
                   help="stop a drain after this many seconds from the first worker start "
                        "and rate the tasks done so far (0: always drain the whole backlog)")
    p.add_argument("--enqueue-timed", type=int, default=5000,
                   help="time the first N enqueues of each backlog; fill the rest untimed")
    p.add_argument("--default-procs", default="1",
                   help="process counts for the library-default concurrency cells")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/15",
                   help="dedicated DB: it is FLUSHDB'ed before every run (never DB 0)")
    p.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/conveyor_bench",
                   help="dedicated database, dropped and re-created by the PostgreSQL peers")
    p.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/",
                   help="RabbitMQ for the RabbitMQ peers; each deletes its own queues first")
    p.add_argument("--nats-url", default="nats://127.0.0.1:4222",
                   help="NATS with JetStream for the NATS peers; each deletes its own streams")
    p.add_argument("--python", default="3.12",
                   help="interpreter for the peer venvs: a version found on PATH or in pyenv, "
                        "or a path (a peer that needs a newer one gets the oldest that fits)")
    p.add_argument("--out", default="", help="write the Markdown report here")
    p.add_argument("--out-dir", default=str(BENCH_DIR / "out"),
                   help="raw JSON, logs of failed runs")
    p.add_argument("--keep-run-dirs", action="store_true", help="keep ledgers/logs of ok runs")
    p.add_argument("--setup-only", action="store_true", help="create the venvs and stop")
    p.add_argument("--render", default="",
                   help="re-render raw JSON file(s) and stop; with several (comma-separated), "
                        "peers in later files replace those in the first")
    p.add_argument("--analysis", default="",
                   help="a hand-written, dated analysis of the runs rendered, pasted into the "
                        "report (never added otherwise: a new run has no old conclusions)")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.runs, args.latency_n = min(args.n, 2000), 1, min(args.latency_n, 50)
        args.time_limit = min(args.time_limit, 60.0)
    if args.redis_url.rstrip("/").rsplit("/", 1)[-1] in ("0", "") or \
            args.redis_url.count("/") < 3:
        p.error("--redis-url must name a dedicated DB index other than 0, e.g. .../15")
    return args


def plan_cells(adapter: Adapter, args: argparse.Namespace) -> list[Cell]:
    concs: list[int | None] = []
    for c in args.concurrency.split(","):
        conc = None if c.strip() == "default" else int(c)
        if conc is None and adapter.default_concurrency == 100 and 100 in concs:
            continue
        if conc == 100 and adapter.default_concurrency == 100 and None in concs:
            concs.remove(None)
        concs.append(conc)
    base = False in adapter.result_modes and args.results != "on"
    base_results = not base
    if args.results == "on" and True not in adapter.result_modes:
        return []
    procs = [int(p) for p in args.procs.split(",")]
    cells: list[Cell] = []
    for workload in args.workloads.split(","):
        if workload not in adapter.workloads:
            continue
        for k in procs:
            for conc in concs:
                if conc is None and str(k) not in args.default_procs.split(","):
                    continue
                n = args.n
                if workload == "sleep":
                    slots = k * (conc or adapter.default_concurrency)
                    cap = int(args.sleep_budget * slots / SLEEP_SECONDS) // 100 * 100
                    n = max(200, min(n, cap))
                cells.append(Cell(workload, k, conc, base_results, n))
    if args.results == "both" and base and True in adapter.result_modes \
            and "noop" in args.workloads.split(","):
        cells += [Cell("noop", k, 100, True, args.n) for k in procs]
    return cells


def adapter_meta(a: Adapter) -> dict[str, Any]:
    keys = ("label", "backend", "default_concurrency", "concurrency_unit", "enqueue_api",
            "sleep_impl", "results_note", "is_ceiling")
    meta = {k: getattr(a, k) for k in keys}
    meta.update(workloads=list(a.workloads), notes=list(a.notes),
                result_modes=list(a.result_modes))
    return meta


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.render:
        raws = [json.loads(Path(f).read_text()) for f in args.render.split(",")]
        analysis = Path(args.analysis) if args.analysis else None
        Path(args.out or BENCH_DIR / "RESULTS.md").write_text(render(merge(raws), analysis))
        return 0

    adapters = discover()
    wanted = [s for s in args.peers.split(",") if s]
    skip = {s for s in args.skip.split(",") if s}
    unknown = [w for w in [*wanted, *skip] if w not in adapters]
    if unknown:
        print(f"unknown peers: {unknown}; known: {list(adapters)}", file=sys.stderr)
        return 2
    selected = [a for a in adapters.values()
                if (not wanted or a.name in wanted) and a.name not in skip]

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    raw_path = out_dir / f"raw-{stamp}.json"
    redis_hostport = args.redis_url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = redis_hostport.partition(":")
    raw: dict[str, Any] = {
        "config": {
            "command": "python bench/run.py " + shlex.join(argv if argv is not None
                                                           else sys.argv[1:]),
            "n": args.n, "runs": args.runs, "quick": args.quick, "time_limit": args.time_limit,
            "procs": [int(p) for p in args.procs.split(",")],
            "sleep_budget": args.sleep_budget, "latency_n": args.latency_n,
            "drain_cap": args.drain_cap, "enqueue_timed": args.enqueue_timed,
            "latency_gap_ms": args.latency_gap_ms, "redis_url": args.redis_url,
        },
        "machine": machine_facts(host, int(port or 6379)),
        "adapters": {a.name: adapter_meta(a) for a in selected},
        "versions": {}, "setup_errors": {}, "results": [], "probe": [],
    }

    def save() -> None:
        raw_path.write_text(json.dumps(raw, indent=1))
        if args.out:
            Path(args.out).write_text(render(raw, Path(args.analysis) if args.analysis else None))

    # Setup: one venv per peer --------------------------------------------------------
    pythons = find_pythons()
    runners: list[tuple[Adapter, PeerRunner]] = []
    opts = Options(redis_url=args.redis_url, pg_dsn=args.pg_dsn, out_dir=out_dir,
                   time_limit=args.time_limit, latency_n=args.latency_n,
                   latency_gap_ms=args.latency_gap_ms, keep_run_dirs=args.keep_run_dirs,
                   drain_cap=args.drain_cap, enqueue_timed=args.enqueue_timed,
                   amqp_url=args.amqp_url, nats_url=args.nats_url)
    for a in selected:
        try:
            venv = ensure_venv(a, choose_python(a, pythons, args.python), log)
            raw["versions"][a.name] = peer_versions(a, venv)
        except (SetupError, OSError) as exc:
            log(f"[setup] {a.name}: FAILED: {exc}")
            raw["setup_errors"][a.name] = str(exc)
            continue
        log(f"[setup] {a.name}: ok {raw['versions'][a.name]}")
        runners.append((a, PeerRunner(a, venv, opts, log)))
    if args.setup_only:
        save()
        return 0 if not raw["setup_errors"] else 1

    # Runs: rounds outermost, so drift on a noisy machine hits every peer alike --------
    plans = {a.name: plan_cells(a, args) for a, _ in runners}
    total = sum(len(c) for c in plans.values()) * args.runs
    log(f"plan: {total} drain runs over {len(runners)} peers, {args.runs} round(s); "
        f"raw results -> {raw_path}")
    done = 0
    for rnd in range(args.runs):
        for a, runner in runners:
            for cell in plans[a.name]:
                res = runner.drain(cell)
                done += 1
                _record(raw, res)
                m = res.metrics
                capped = f", capped at {m['done']:.0f} done" if res.info.get("capped") else ""
                log(f"[{done}/{total}] {a.name} {cell.key()}: " + (
                    f"drain {m['drain_rate']:,.0f}/s (steady {m['steady_rate']:,.0f}/s{capped}), "
                    f"enqueue {m['enqueue_rate']:,.0f}/s, cpu {m['cpu_ms_per_task']:.3f} "
                    f"ms/task, rss {m['rss_task_proc_mib']:.0f} MiB"
                    if res.ok else "FAILED " + res.error.splitlines()[0][:200]))
                save()
            if not args.no_latency:
                for results in sorted({c.results for c in plans[a.name]}):
                    res = runner.latency(results)
                    _record(raw, res)
                    log(f"  {a.name} latency results={results}: " + (
                        f"p50 {res.metrics['p50_ms']:.1f} ms p99 {res.metrics['p99_ms']:.1f} ms"
                        if res.ok else "FAILED " + res.error.splitlines()[0][:200]))
                    save()
            for k, v in runner.facts.items():
                raw["versions"][a.name][k] = str(v)
        log(f"round {rnd + 1}/{args.runs} done")

    if args.probe:
        from harness.probe import probe

        for a, runner in runners:
            if a.backend != "redis":
                continue
            for results in sorted({c.results for c in plans[a.name]}):
                raw["probe"].append(probe(runner, results, log))
                save()
    save()
    log(f"done; raw: {raw_path}" + (f", report: {args.out}" if args.out else ""))
    return 0


def _record(raw: dict[str, Any], res: RunResult) -> None:
    raw["results"].append(res.to_json())


if __name__ == "__main__":
    sys.exit(main())
