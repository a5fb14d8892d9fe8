"""`nw`: the project's command line, used by the Makefile, Meltano jobs and Airflow.

Entry points (they resolve the day once: --date, else $RUN_DATE, else today UTC):
  nw run [JOB] [--from STEP] [--date D] [--verbose]   run a job's steps for day D (a line per step;
                                          Meltano's and dbt's output in data/logs/D/)
  nw status [--date D] [--error STEP]     every pipeline's recent days, or a day's steps and what to rerun
  nw db up|start|stop|status|set-passwords   the embedded Postgres server
  nw airflow up [--workers N] | worker | backfill --from D --to D [--wait]   Airflow, a worker, a backfill
  nw docs [--port P] [--no-serve]         dbt's docs site: lineage, tests, freshness, exposures
  nw report [--last N] [--out DIR]        an HTML page of charts: rows, seconds and failures per step and day
  nw padam insert-month|prepare|export|reconcile   the PADAM monthly pipeline (see nw padam -h)
  nw ads up|down|load|archive|status      the ads API -> S3 -> Postgres pipeline (see nw ads -h)
  nw s3 up|down|check [--restart]         the embedded S3 server (SeaweedFS); is the S3 endpoint fit for use

Meltano tasks (they refuse to start without a pinned day, $RUN_DATE):
  nw begin STEP      lease, clean, gate, intent
  nw commit STEP     verify, publish or swap in, ledger
  nw export          write the day's CSV and JSON
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import traceback

from northwind_elt.core import ledger, settings
from northwind_elt.core.day import DAY_ENV, InvalidDay, parse_day, resolve_day
from northwind_elt.core.errors import ConfigError, PipelineError
from northwind_elt.core.locks import AlreadyRunning
from northwind_elt.pipelines import DEFAULT, PIPELINES, all_jobs, pipeline_of_job, pipeline_of_step


def _load_env_file() -> None:
    env_file = settings.project_root() / ".env"
    if env_file.exists():
        from dotenv import load_dotenv

        load_dotenv(env_file, override=False)


def _fail(message: str) -> int:
    print(f"ERROR: {ledger.redact(message)}", file=sys.stderr)
    return 1


def cmd_db(args: argparse.Namespace) -> int:
    from northwind_elt.local import postgres as embedded

    try:
        return _db_action(embedded, args.action)
    except embedded.EmbeddedPostgresError as err:
        return _fail(f"embedded Postgres: {err}")


def _db_action(embedded, action: str) -> int:
    if action == "up":
        from northwind_elt.entry.local_services import db_up

        db_up()
        names = ", ".join(
            settings.pg_conn(p).dbname for p in ("SOURCE_PG", *settings.WAREHOUSES) if os.environ.get(f"{p}_PASSWORD")
        )
        print(f"Postgres is up on 127.0.0.1:{embedded.port()} (databases: {names})")
    elif action == "start":
        embedded.start()
    elif action == "stop":
        embedded.stop()
        print("Postgres stopped")
    elif action == "set-passwords":
        embedded.set_passwords()
        print("Passwords of the pipeline roles set from the *_PG_PASSWORD variables")
    else:
        print("running" if embedded.is_running() else "stopped")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from northwind_elt.entry.run import run

    day = resolve_day(args.date)
    if args.from_step:
        pipeline = pipeline_of_step(args.from_step)
        steps = pipeline.steps_from(args.from_step)
    else:
        pipeline, steps = pipeline_of_job(args.job or DEFAULT.all_steps_job)
    os.environ[DAY_ENV] = day.isoformat()  # pinned for everything this run starts
    return run(pipeline, steps, day, verbose=args.verbose)


def cmd_status(args: argparse.Namespace) -> int:
    from northwind_elt.entry import status

    if args.error:
        text, code = status.step_error(resolve_day(args.date), args.error, args.run)
        print(text)
        return code
    extras = {**_padam_status(), **_ads_status()}
    if args.date is None:
        return status.overview(args.days, extras)  # non-zero when the lake lost a committed file
    print("\n".join(status.day_detail(resolve_day(args.date), extras)))
    return 0


def _ads_status() -> dict:
    """What api_ad_data holds, under the ads table (its runs and days come from the ledger)."""
    if not os.environ.get("ADS_PG_PASSWORD"):
        return {}
    from northwind_elt.entry.status import Extra
    from northwind_elt.pipelines.ads import commands

    lines, code = commands.status(recent=0)
    return {"ads": Extra(notes=lines, lost=code != 0)}


def _padam_status() -> dict:
    """PADAM's reconciliation of production, warehouse and published stats: a column of its months."""
    if not all(os.environ.get(f"{p}_PASSWORD") for p in ("PADAM_PROD_PG", "PADAM_WH_PG")):
        return {}
    import re

    from northwind_elt.entry.status import Check, Extra
    from northwind_elt.pipelines.padam import commands

    extra = Extra(column="reconciled")
    try:
        report, _ = commands.reconcile()
    except PipelineError as err:
        extra.notes.append(f"  reconciled: not checked: {err.message.splitlines()[0]}")
        return {"padam": extra}
    # The report's month lines: "YYYY-MM  rows / sum (production)  (warehouse raw)  (published stats)  state".
    for line in report.splitlines()[1:]:
        found = re.fullmatch(r"(\d{4}-\d{2})\s+(.*\S)\s+(\w+)", line)
        pairs = re.findall(r"(\d+) / (\d+)", found[2]) if found else []
        if len(pairs) != 3:
            continue
        month, state = found[1], found[3]
        where = ("production", "warehouse raw", "published stats")
        detail = "; ".join(f"{w} {int(n):,} rows, sum {int(s):,}" for w, (n, s) in zip(where, pairs, strict=True))
        if state == "ok":
            extra.checks[month] = Check(state, detail=detail)
        else:
            extra.checks[month] = Check(
                state, f"not reconciled ({state})", commands.reconcile_fix(state, month), detail
            )
    return {"padam": extra}


def cmd_padam(args: argparse.Namespace) -> int:
    from northwind_elt.pipelines.padam import commands
    from northwind_elt.protocol.meltano import Interrupted

    if args.padam_command == "insert-month":
        print(commands.insert_month(args.year, args.month))
    elif args.padam_command == "prepare":
        try:
            print(commands.prepare(full_refresh=args.full_refresh, verbose=args.verbose))
        except Interrupted as stop:
            return 128 + stop.signum
    elif args.padam_command == "up":
        from northwind_elt.entry.local_services import padam_up

        print(padam_up())
    elif args.padam_command == "merge":
        print(commands.merge())
    elif args.padam_command == "export":
        print(commands.export(args.year, args.month))
    else:
        report, code = commands.reconcile()
        print(report)
        return code
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from northwind_elt.entry.docs import docs

    return docs(args.host, args.port, serve=not args.no_serve)


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from northwind_elt.entry.report import report  # plotly is loaded by this command only

    return report(Path(args.out) if args.out else None, args.last or None)


def cmd_airflow(args: argparse.Namespace) -> int:
    from northwind_elt.entry import airflow_local

    if args.airflow_command == "up":
        return airflow_local.up(args.workers)
    if args.airflow_command == "worker":
        return airflow_local.worker(args.name, args.concurrency)
    if args.airflow_command == "backfill":
        return airflow_local.backfill(args.dag, parse_day(args.first), parse_day(args.last), args.wait)
    day = parse_day(args.day)
    print(airflow_local.record_failure(args.pipeline, args.step, day, args.since, args.reason, args.where))
    return 0


def cmd_ads(args: argparse.Namespace) -> int:
    from northwind_elt.pipelines.ads import commands

    action = args.ads_command
    if action == "load":
        return commands.load(resolve_day(args.date), args.run_id)
    if action == "replay":
        return commands.replay(args.key, args.run_id)
    if action == "archive":
        print(commands.archive(resolve_day(args.date), args.run_id))
    elif action == "status":
        lines, code = commands.status(with_s3=True)
        print("\n".join(lines))
        return code
    else:
        from northwind_elt.entry import local_services

        task = {
            "up": local_services.ads_up,
            "down": local_services.ads_down,
            "begin-load": commands.begin_load,
            "verify-backup": commands.verify_backup,
            "commit": commands.commit,
        }[action]
        print(task())
    return 0


def _add_ads(sub, common) -> None:
    # Not its commands module: every `nw` process builds this parser, and that module loads S3 and
    # database clients (a fifth of a second) that most commands never use.
    from northwind_elt.pipelines import ads as ads_package
    from northwind_elt.pipelines.ads import config as ads_config

    ads = sub.add_parser(
        "ads", help="the ads pipeline", description=ads_package.__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ads.set_defaults(func=cmd_ads)
    actions = ads.add_subparsers(dest="ads_command", required=True)
    for name, what in (
        ("load", "one API call -> verified S3 backup -> api_ad_data (a run id with a verified backup: no API call)"),
        ("archive", "rows shown before (the day's 00:00 UTC - ADS_RETENTION_HOURS) -> S3 archive, then deleted"),
    ):
        action = actions.add_parser(name, help=what, description=what, parents=[common])
        action.add_argument("--run-id", help="the run's id (Airflow's run_id); default: a new one")
    for name, what in (
        ("up", "start the local API and S3 server (and the embedded Postgres), create the bucket and tables"),
        ("down", "stop the local API and S3 server"),
        (
            "status",
            "latest loads and archives, api_ad_data, quarantined records, held backups, refused responses",
        ),
        ("begin-load", "(task of ads-load) check the run may write its backup"),
        ("verify-backup", "(task of ads-load) verify the backup object, then write its manifest"),
        ("commit", "(task of ads-load) the landed backup -> api_ad_data, one transaction"),
    ):
        actions.add_parser(name, help=what, description=what)
    actions.choices["up"].add_argument(
        "--accept-lost-objects",
        action=ads_config.AcceptLostObjects,
        help="the bucket is gone but the ads database records objects in it: create it empty (nw ads status "
        "keeps listing what was lost)",
    )
    what = "a kept refused response through the load (checks, backup, insert), no API call"
    replay = actions.add_parser("replay", help=what, description=what)
    replay.add_argument("key", help="refused/<day>/<run id>.json or .jsonl, as nw ads status lists it")
    replay.add_argument("--run-id", help="the replay's run id (default: the refused run's)")


def cmd_s3(args: argparse.Namespace) -> int:
    from northwind_elt.entry import local_services

    if args.s3_command == "up":
        print("\n".join(local_services.s3_up()))
    elif args.s3_command == "down":
        print("\n".join(local_services.s3_down()) or "nothing to stop (the S3 endpoint is not on this machine)")
    else:
        passed, failures = local_services.s3_check(restart=args.restart)
        print("\n".join(passed))
        if failures:
            for failure in failures:
                print(f"ERROR: {ledger.redact(failure)}", file=sys.stderr)
            print(
                "Fix: point the failing bucket's endpoint (ADS_S3_ENDPOINT_URL for the ads bucket, "
                "NW_LAKE_S3_ENDPOINT_URL for the lake's) at an S3 that honours conditional writes and keeps its "
                "objects (AWS S3, or the embedded SeaweedFS: nw s3 up); a missing bucket is created by nw ads up "
                "(the ads bucket) or nw s3 up (the lake's)\n"
                f"Then rerun: nw s3 check{' --restart' if args.restart else ''}",
                file=sys.stderr,
            )
            return 1
    return 0


def _add_s3(sub) -> None:
    s3 = sub.add_parser(
        "s3",
        help="the embedded S3 server (SeaweedFS) and the S3 conformance check",
        description="The embedded S3 server runs when ADS_S3_ENDPOINT_URL is on this machine; its objects "
        "live in ADS_S3_DATA_DIR (default $NW_DATA_DIR/s3).",
    )
    s3.set_defaults(func=cmd_s3)
    actions = s3.add_subparsers(dest="s3_command", required=True)
    actions.add_parser("up", help="start the embedded S3 server unless it runs (ready once it stores and reads a file)")
    actions.add_parser("down", help="stop the embedded S3 server")
    what = (
        "check the configured S3 (embedded or real) with scratch objects: round trip, If-None-Match: * refused "
        "on an existing key, 16 racing creates of one key -> exactly 1 winner, stale If-Match refused"
    )
    check = actions.add_parser("check", help=what, description=what)
    check.add_argument(
        "--restart",
        action="store_true",
        help="also restart the embedded server and read back an object written before (not while a pipeline runs)",
    )


def _add_padam(sub) -> None:
    from northwind_elt.pipelines import padam as padam_package  # not its commands: see _add_ads

    padam = sub.add_parser(
        "padam",
        help="the PADAM monthly pipeline",
        description=padam_package.__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    padam.set_defaults(func=cmd_padam)
    actions = padam.add_subparsers(dest="padam_command", required=True)
    for name, what in (
        ("insert-month", "replace YEAR-MONTH in production with generated rows ($RANDOM_MAIN_CONTROLLER)"),
        ("export", "write YEAR-MONTH's stats files and the year to date"),
    ):
        action = actions.add_parser(name, help=what, description=what)
        action.add_argument("year", help="e.g. 2022")
        action.add_argument("month", help="1 to 12")
    prepare = actions.add_parser("prepare", help="incremental load into the warehouse, then the dbt models")
    prepare.add_argument("--full-refresh", action="store_true", help="reload every month from production")
    prepare.add_argument("--verbose", action="store_true", help="stream Meltano's and dbt's output (always in the log)")
    actions.add_parser("merge", help="(task of the Meltano job padam-prepare) apply the landed rows, reconcile")
    actions.add_parser("reconcile", help="count and sum per month: production, warehouse, published stats")
    actions.add_parser("up", help="start the embedded Postgres when PADAM's databases live on it, else check them")


def _task(action):
    """A Meltano task: runs for the pinned day, of the pipeline that owns the step."""

    def run_task(args: argparse.Namespace) -> int:
        print(action(pipeline_of_step(args.step), args.step))
        return 0

    return run_task


def build_parser() -> argparse.ArgumentParser:
    from northwind_elt.entry import airflow_local
    from northwind_elt.protocol import steps as protocol

    parser = argparse.ArgumentParser(prog="nw", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--date", help="day to process, YYYY-MM-DD (default: $RUN_DATE, else today UTC)")
    # --date is accepted after the subcommand too: `nw run daily --date 2024-01-15`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--date", default=argparse.SUPPRESS, help="day to process, YYYY-MM-DD")
    sub = parser.add_subparsers(dest="command", required=True)
    add = functools.partial(sub.add_parser, parents=[common])
    db = add("db")
    db.add_argument("action", choices=["up", "start", "stop", "status", "set-passwords"])
    db.set_defaults(func=cmd_db)
    run = add("run")
    run.add_argument("job", nargs="?", choices=all_jobs())
    steps = sorted({s for p in PIPELINES.values() for s in p.step_names})
    run.add_argument("--from", dest="from_step", choices=steps)
    run.add_argument(
        "--verbose", action="store_true", help="stream Meltano's and dbt's output (always in the step's log)"
    )
    run.set_defaults(func=cmd_run)
    status = add(
        "status",
        description="Without --date: every pipeline's recent units (days, months, runs). With it: that day's steps"
        " (a month pipeline: the month of the day; a run pipeline: the day's runs).",
    )
    status.add_argument(
        "--last",
        "--days",
        dest="days",
        type=int,
        default=7,
        metavar="N",
        help="how many recent units per pipeline: days, months or runs (default 7)",
    )
    status.add_argument("--error", metavar="STEP", help="the whole recorded error of STEP's latest attempt of the day")
    status.add_argument("--run", metavar="RUN_ID", help="with --error, of a run pipeline: that run's attempt")
    status.set_defaults(func=cmd_status)
    docs = add("docs", description="Generate dbt's docs site (freshness, lineage, exposures) and serve it.")
    docs.add_argument("--host", help="interface to serve on (default: $DBT_DOCS_HOST, else 127.0.0.1)")
    docs.add_argument("--port", type=int, help="port to serve on (default: $DBT_DOCS_PORT, else 8081)")
    docs.add_argument("--no-serve", action="store_true", help="generate only")
    docs.set_defaults(func=cmd_docs)
    report = sub.add_parser(
        "report",
        description="Write an HTML page of charts from the run ledger: rows and wall seconds per step and day"
        " (month) of every pipeline, failed attempts marked, and each pipeline's health over time.",
    )
    report.add_argument(
        "--last",
        type=int,
        default=30,
        metavar="N",
        help="how many recent days (months) per pipeline (default 30; 0: all)",
    )
    report.add_argument("--out", metavar="DIR", help="where to write index.html (default: $NW_DATA_DIR/report)")
    report.set_defaults(func=cmd_report)
    airflow = sub.add_parser("airflow", description="A local Airflow on AIRFLOW_PORT (from .env), and backfills.")
    actions = airflow.add_subparsers(dest="airflow_command", required=True)
    start = actions.add_parser("up", help="start Airflow: API server first, the rest once it answers; Ctrl-C stops it")
    start.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="(NW_AIRFLOW_EXECUTOR=edge) also start N workers here, each in a working copy and scratch of its own",
    )
    work = actions.add_parser(
        "worker", help="(NW_AIRFLOW_EXECUTOR=edge) run tasks of the controller at NW_AIRFLOW_URL from this working copy"
    )
    work.add_argument("--name", help="the worker's name in Airflow and the ledger (default: NW_HOST_ID, else host)")
    work.add_argument("--concurrency", type=int, help="tasks at once (default: NW_AIRFLOW_WORKER_CONCURRENCY, else 1)")
    back = actions.add_parser("backfill", help="run a daily or monthly DAG for the days (months) FROM..TO only")
    back.add_argument("--from", dest="first", required=True, metavar="YYYY-MM-DD")
    back.add_argument("--to", dest="last", required=True, metavar="YYYY-MM-DD")
    back.add_argument("--dag", default=DEFAULT.dag_id, choices=sorted(airflow_local.backfill_dags()))
    back.add_argument("--wait", action="store_true", help="wait for the runs; exit 1 if one failed")
    failure = actions.add_parser("record-failure", help="(the DAGs' failure callback) record an Airflow failure")
    for name in ("pipeline", "step", "day"):
        failure.add_argument(name)
    failure.add_argument("--since", help="the attempt's start (ISO); an entry of nw run after it wins")
    failure.add_argument("--reason", default="the task failed")
    failure.add_argument("--where", default="")
    airflow.set_defaults(func=cmd_airflow)
    for name, action in (("begin", protocol.begin), ("commit", protocol.commit)):
        task = add(name)
        task.add_argument("step", choices=steps)
        task.set_defaults(func=_task(action))
    export = add("export")
    export.add_argument("step", nargs="?", default="export", choices=[s for s in steps if s.endswith("export")])
    export.set_defaults(func=_task(protocol.export))
    _add_padam(sub)
    _add_ads(sub, common)
    _add_s3(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    _load_env_file()
    args = build_parser().parse_args(argv)
    try:
        if args.date is not None:
            # A task's day is pinned by its entry point; --date pins it for this command.
            parse_day(args.date)
            os.environ[DAY_ENV] = args.date
        return args.func(args)
    except (InvalidDay, AlreadyRunning) as err:
        return _fail(str(err))
    except (PipelineError, ConfigError) as err:
        return _fail(err.message)
    except KeyboardInterrupt:
        return _fail("interrupted")
    except BrokenPipeError:  # `nw status | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:
        # An unexpected error: the traceback goes to the log, the last line names the step.
        traceback.print_exc()
        step = getattr(args, "step", args.command)
        return _fail(f"{step}: {type(err).__name__}: {err}")


if __name__ == "__main__":
    sys.exit(main())
