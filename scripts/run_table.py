"""Run every row of one of the paper's tables through run.py (train each network once, then each row).

    python scripts/run_table.py admm                                   # paper scale (GPU work)
    python scripts/run_table.py admm scale=cpu paths.runs_csv=results/cpu/tables_runs.csv
    python scripts/run_table.py all scale=smoke paths.runs_csv=/tmp/smoke.csv
    python scripts/run_table.py hydra --dry-run                        # print the commands only
    python scripts/run_table.py admm --rows 1,2,4 scale=cpu weights.path=W --skip-done  # some rows, not twice

Then render: python scripts/make_tables.py --runs <the runs CSV>.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gdws.pipeline.table_runs import TABLES, parse_rows, run_table  # noqa: E402


def main() -> int:
    """Parse the table name(s) and overrides, run them, exit non-zero when any command failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=[*TABLES, "all"])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to every run.py command")
    parser.add_argument("--dry-run", action="store_true", help="print the commands without running them")
    parser.add_argument("--rows", help="only these paper rows, in this order (1-5, 1,3,5 or 1-3,7), and the "
                        "training of the networks they need; one table only")
    parser.add_argument("--skip-done", action="store_true", help="skip rows already in paths.runs_csv (same "
                        "table, paper row, scale and attack)")
    args = parser.parse_intermixed_args()
    if args.rows and args.table == "all":
        parser.error("--rows picks rows of one table: name the table")
    try:
        rows = parse_rows(args.rows) if args.rows else None
        tables = TABLES if args.table == "all" else (args.table,)
        failed = sum(run_table(t, args.overrides, dry_run=args.dry_run, rows=rows, skip_done=args.skip_done)
                     for t in tables)
    except ValueError as err:  # a bad --rows or a row the table lacks at this scale: before anything runs
        parser.error(str(err))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
