"""Run every benchmark and print one table; optionally write JSON ``{name: {value, unit, target, ok}}``.

    python bench/run.py [--quick] [--only NAME[,NAME]] [--json FILE]

Each module ``bench/bench_<name>.py`` exposes ``run(quick) -> list[BenchResult]``. Exit code 0 even
when a target is missed: the table (and ``ok``) is the verdict, so a slow machine never hides figures.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.common import BenchResult  # noqa: E402
from openrlhf_act.files import write_text  # noqa: E402


def discover() -> list[str]:
    return sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(discover())}")
    parser.add_argument("--json", default=None, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    names = [n for n in args.only.split(",") if n] or discover()
    results: list[BenchResult] = []
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            results.extend(module.run(args.quick))
        except Exception as exc:  # one broken benchmark must not hide the others
            traceback.print_exc()
            results.append(BenchResult(f"{name}: failed", float("nan"), "", "runs", False, repr(exc)))

    width = max([len(r.name) for r in results] + [4])
    print(f"{'benchmark':<{width}}  {'value':>14}  {'unit':<10}  {'target':<14}  ok   note")
    for r in results:
        print(
            f"{r.name:<{width}}  {r.value:>14.4g}  {r.unit:<10}  {r.target:<14}  {'yes' if r.ok else 'NO ':<4} {r.note}"
        )
    if args.json:
        payload = {
            r.name: {"value": r.value, "unit": r.unit, "target": r.target, "ok": r.ok, "note": r.note} for r in results
        }
        write_text(args.json, json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
