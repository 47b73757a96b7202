"""Run the benchmarks and print one table: ``python -m benchmarks [csv] [dispatch] [options]``.

python -m benchmarks                 everything at the sizes of the goals (a few minutes)
python -m benchmarks --quick         small sizes: checks the benchmarks work, not the speed
python -m benchmarks csv --big       also import a 1,000,000-row file (peak RSS goal)
python -m benchmarks dispatch --sweep
                                     also find the concurrency 100 ms latency needs
python -m benchmarks webhook claim idle replicas
                                     the inbound, large-database, idle and replica figures
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import replace

from benchmarks import claim, csv_import, dispatch, idle, replicas, webhook
from benchmarks.common import Figure, format_machine, format_markdown, format_table, machine
from scheduler.clock import SystemClock

BENCHMARKS = ("csv", "dispatch", "webhook", "claim", "idle", "replicas")
QUICK_ROWS = 5_000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="Run dripbot's benchmarks and print a table."
    )
    parser.add_argument("which", nargs="*", help=f"any of {', '.join(BENCHMARKS)}; default: all")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a fast check")
    parser.add_argument("--big", action="store_true", help="also import 1,000,000 CSV rows")
    parser.add_argument("--sweep", action="store_true", help="concurrency sweep at 100 ms")
    parser.add_argument("--rows", type=int, help="CSV rows (default 100,000)")
    parser.add_argument("--messages", type=int, help="messages per no-latency dispatch case")
    parser.add_argument(
        "--concurrency", type=int, default=512, help="in-flight sends at 100 ms latency"
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.which) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    which = args.which or list(BENCHMARKS)
    postgres = not args.no_postgres

    started = SystemClock().now()
    print(f"dripbot benchmarks, {started:%Y-%m-%d %H:%M} UTC")
    print(format_machine(machine()))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"{'load:':<12} {load} (1, 5, 15 min, at start)\n", flush=True)

    figures: list[Figure] = []
    if "csv" in which:
        rows = args.rows or (QUICK_ROWS if args.quick else csv_import.GOAL_ROWS)
        figures += csv_import.run(rows, big=args.big, postgres=postgres)
    if "dispatch" in which:
        sizes = dispatch.QUICK if args.quick else dispatch.Sizes()
        if args.messages:
            sizes = replace(sizes, lifted=args.messages, raw=args.messages)
        chosen = dispatch.cases(sizes, postgres=postgres, concurrency=args.concurrency)
        if args.sweep:
            chosen += dispatch.sweep(sizes)
        if args.quick:  # runs of a second or two say nothing about throughput goals
            chosen = [case if case.rate else replace(case, goal=None) for case in chosen]
        figures += dispatch.run(chosen)
    if "webhook" in which:
        figures += webhook.run(
            seconds=2 if args.quick else 6, messages=2000 if args.quick else 20_000
        )
    if "claim" in which:
        figures += claim.run(10_000 if args.quick else claim.GOAL_ROWS, postgres=postgres)
    if "idle" in which:
        figures += idle.run(settle=1 if args.quick else 5, span=3 if args.quick else 30)
    if "replicas" in which and postgres:
        figures += replicas.run(messages=600 if args.quick else 6000)

    print(format_table(figures))
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\nload at the end: {load}")
    if args.markdown:
        print()
        print(format_markdown(figures))
    return 0 if all(figure.checked for figure in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
