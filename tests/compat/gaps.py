"""Run the corpus and list what fails, grouped by cause, as KNOWN_GAPS.toml entries.

    python -m tests.compat.gaps                 # both sides: every failure, grouped
    python -m tests.compat.gaps --toml          # the Conveyor side's failures as TOML
    python -m tests.compat.gaps caviardeul      # some samples only

With ``CONVEYOR_COMPAT_SRC=<clone>/src`` the Conveyor side runs on that checkout.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from tests.compat.corpus_runner import PARALLEL_RUNS, Outcome, execute
from tests.compat.drivers import DRIVERS
from tests.compat.harness import SideName

_ERROR = re.compile(r"^(?:E\s+)?([A-Za-z_.]*(?:Error|Exception|Exit|Unavailable)\b.*)$")


_PATH = re.compile(r"\(/[^()]*?/((?:conveyor|taskiq\w*)/[^()]*)\)")


def cause(detail: str) -> str:
    """The line of a check's failure that names the error (without machine paths)."""
    return _PATH.sub(r"(\1)", _cause(detail))


def _cause(detail: str) -> str:
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    if lines and lines[0].startswith("not reached"):
        # "not reached: <step> failed", or a probe that died: then with the error it died of
        error = next((m[1] for m in map(_ERROR.match, lines[1:]) if m), None)
        return f"{lines[0]} {error[:250]}" if error else lines[0]
    for line in lines:
        match = _ERROR.match(line)
        if match and not match[1].startswith("Traceback"):
            return match[1][:300]
    return (lines[0] if lines else "failed")[:300]


TOML_HEADER = """\
# Checks of the compat corpus that fail on Conveyor today, with the error seen.
# One table per sample, one entry per check: "check" = "the error it gives".
# tests/compat/test_corpus.py runs each listed check as a strict xfail: when a fix makes
# one pass, its test fails until the entry is deleted here.
# Regenerate: CONVEYOR_COMPAT_SRC=<clean clone>/src python -m tests.compat.gaps --toml"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("samples", nargs="*", default=sorted(DRIVERS))
    parser.add_argument("--toml", action="store_true", help="the Conveyor side as TOML")
    args = parser.parse_args(argv)
    sides: list[SideName] = ["conveyor"] if args.toml else ["taskiq", "conveyor"]
    runs = [(sample, side) for sample in args.samples for side in sides]
    started = time.monotonic()
    with ThreadPoolExecutor(PARALLEL_RUNS) as pool:
        outcomes: dict[tuple[str, SideName], Outcome] = dict(
            zip(runs, pool.map(lambda run: execute(*run), runs), strict=True)
        )
    elapsed = time.monotonic() - started
    if args.toml:
        print(TOML_HEADER)
        for sample in args.samples:
            failed = {
                check: result
                for check, result in outcomes[(sample, "conveyor")].results.items()
                if not result.ok
            }
            if failed:
                print(f"\n[{sample}]")
                for check, result in failed.items():
                    reason = cause(result.detail).replace("\\", "\\\\").replace('"', '\\"')
                    print(f'"{check}" = "{reason}"')
        return 0
    by_cause: dict[str, list[str]] = defaultdict(list)
    for (sample, side), outcome in outcomes.items():
        total = len(outcome.results)
        passed = sum(result.ok for result in outcome.results.values())
        print(f"{sample:24} {side:9} {passed:4}/{total:<4} {outcome.unavailable or ''}")
        for check, result in outcome.results.items():
            if not result.ok:
                by_cause[f"[{side}] {cause(result.detail)}"].append(f"{sample}:{check}")
    print(f"\n{len(runs)} runs in {elapsed:.0f} s\n")
    for reason, checks in sorted(by_cause.items(), key=lambda item: -len(item[1])):
        print(f"{len(checks):4}  {reason}")
        for check in checks:
            print(f"        {check}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
