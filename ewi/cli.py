"""The `ewi` command line. Exit codes: 0 success, 1 an unexpected error, 2 usage error, 3 a delivery
was quarantined or rejected (ingest), a gate failed (transform) or a published batch holds reversible
pseudonyms (reversible-pseudonyms) or the audit chain is broken (audit verify, restore), 4 the warehouse is unreachable,
5 the disk is full, 6 a time limit ran out, 7 a lock wait ran out (ewi.errors defines them). With
--json every outcome, failures included, is JSON lines on stdout."""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from ewi.errors import EXIT_GATE, EXIT_OK, EXIT_USAGE, InternalError, UsageError, answer, classify
from ewi.settings import get_settings


def _print_json(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False, default=str), flush=True)


def cmd_warehouse(args: argparse.Namespace) -> int:
    from ewi import warehouse

    if args.action == "url":
        print(warehouse.dsn())
    elif args.action == "dbt-env":
        # shell lines for `eval` (make lint): the password goes to the shell, never to a log
        for key, value in warehouse.dbt_env().items():
            print(f"export {key}={shlex.quote(value)}")
    elif args.action == "stop":
        print("stopped" if warehouse.stop() else "not running")
    elif args.action == "init":
        from ewi import warehouse_init

        applied = warehouse_init.init_warehouse()
        print(f"warehouse ready ({len(applied)} migrations applied now)")
    elif args.action == "set-role-passwords":
        from ewi import warehouse_init

        print("passwords set for: " + (", ".join(warehouse_init.set_role_passwords()) or "none (no variables set)"))
    return EXIT_OK


def cmd_synth(args: argparse.Namespace) -> int:
    from ewi import synth

    summary = synth.generate(Path(args.out), weeks=args.weeks, end_week=args.end_week, seed=args.seed,
                             rises=not args.no_rises, co_rises=args.co_rises)
    _print_json(summary)
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    from ewi import warehouse_init
    from ewi.ingest import ingest_files
    from ewi.ingest.reading import safe_file_name

    warehouse_init.init_warehouse()
    paths = [Path(p) for p in args.paths]
    for p in paths:
        # A symbolic link is not followed here: ingest refuses it, with an audit record.
        shown = safe_file_name(str(p))  # a name may itself hold an identity number
        if p.is_dir() and not p.is_symlink():
            raise UsageError(f"{shown} is a directory; pass files (e.g. {shown}/*.csv)")
        if not p.exists() and not p.is_symlink():
            raise UsageError(f"no such file: {safe_file_name(p.name)}")
    decided = []

    def say(r) -> None:
        decided.append(r)
        if args.json:
            _print_json(r.as_dict())
        else:
            print(f"{r.status:12} {r.rows if r.rows is not None else '-':>8}  {r.file}  {r.reason or ''}",
                  flush=True)

    try:
        ingest_files(paths, on_result=say)
    except Exception as exc:
        # the files decided before the failure have had their answer; the answer to the failure
        # names the ones that were not decided (running the command again decides them)
        error = classify(exc)
        if isinstance(error, InternalError):
            raise
        done = {r.file for r in decided}
        error.details["not_decided"] = [name for name in (safe_file_name(p.name) for p in paths)
                                        if name not in done]
        raise error from exc
    bad = any(r.status in ("quarantined", "rejected") for r in decided)
    return EXIT_GATE if bad else EXIT_OK


def cmd_quarantine(args: argparse.Namespace) -> int:
    from ewi import warehouse_init
    from ewi.ingest import quarantine

    warehouse_init.init_warehouse()
    if args.action == "list":
        rows = quarantine.list_quarantined()
        for row in rows:
            if args.json:
                _print_json(row)
            else:
                print(f"{row['batch_id']}  {row['source']:15} {row['period']}  {row['file_name']}  {row['reason']}")
        return EXIT_OK
    if not args.batch or not args.reason:
        raise UsageError("ewi quarantine release BATCH --reason TEXT")
    result = quarantine.release(args.batch, args.reason)
    _print_json(result.as_dict()) if args.json else print(f"{result.status} {result.reason or ''}")
    return EXIT_OK if result.status == "published" else EXIT_GATE


def cmd_reversible_pseudonyms(args: argparse.Namespace) -> int:
    from ewi import warehouse, warehouse_init
    from ewi.ingest import pseudonyms

    warehouse_init.init_warehouse()
    with warehouse.connect() as conn:
        found = pseudonyms.reversible_published(conn)
    for batch in found:
        _print_json(batch) if args.json else print(f"{batch['batch_id']}  {batch['source']:15} {batch['period']}")
    return EXIT_GATE if found else EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from ewi import audit_chain, warehouse_init

    warehouse_init.init_warehouse()
    result = audit_chain.verify_warehouse(keep=not args.no_record)
    if args.json:
        _print_json({"status": "holds" if result.holds else "broken", **result.as_dict(),
                     "problems": [p.__dict__ for p in result.problems]})
    elif result.holds:
        print(f"the audit chain holds: {result.links_checked} chain records, {result.records_checked} "
              f"audit rows checked in {result.seconds:.1f} s")
    else:
        print(f"the audit chain is broken ({result.problem_count} problems); first: {result.first_broken}")
        for problem in result.problems[1:]:
            print(f"  also: {problem.words}")
    return EXIT_OK if result.holds else EXIT_GATE


def cmd_backup(args: argparse.Namespace) -> int:
    from ewi import backup

    manifest = backup.backup(Path(args.dir))
    _print_json(manifest) if args.json else print(
        f"backup written to {args.dir}: {len(manifest['files'])} files, "
        f"{manifest['seconds']:.1f} s (manifest.json lists their sha256)")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from ewi import backup

    summary = backup.restore(Path(args.dir), force=args.force)
    _print_json(summary) if args.json else print(
        f"restored {args.dir} into the warehouse in {summary['seconds']:.1f} s; "
        f"audit chain {'holds' if summary['chain_holds'] else 'BROKEN: ' + str(summary['first_broken'])}")
    return EXIT_OK if summary["chain_holds"] else EXIT_GATE


def cmd_transform(args: argparse.Namespace) -> int:
    from ewi import transform, warehouse_init

    warehouse_init.init_warehouse()
    summary = transform.build(select=args.select, full_refresh=args.full_refresh)
    if args.json:
        _print_json(summary)
    else:
        print(f"dbt build: {summary['status']} ({summary['counts']})")
    return EXIT_OK if summary["success"] else EXIT_GATE


def cmd_disclosure_audit(args: argparse.Namespace) -> int:
    """The disclosure audit of what `published` holds now (the gated build runs it before publishing)."""
    from ewi import warehouse, warehouse_init
    from ewi.disclosure.audit import AUDITED, FROM_PUBLISHED, audit_by_method

    warehouse_init.init_warehouse()
    with warehouse.connect(autocommit=True) as conn:
        result = audit_by_method(conn, dict.fromkeys(AUDITED + FROM_PUBLISHED, "published"))
    if args.json:
        _print_json({"passed": result.passed, "message": result.message(), "stats": result.stats})
    else:
        print(f"disclosure audit: {'passed' if result.passed else 'FAILED: ' + result.message()}")
    return EXIT_OK if result.passed else EXIT_GATE


def _end_sessions(name: str) -> None:
    import psycopg

    from ewi.dashboard.security import sessions

    # the dashboard also refuses the user at their next request (it reads the users file each
    # time); ending the sessions here makes it so at once, whatever a page is doing
    try:
        ended = sessions.end_for_user(name)
    except psycopg.OperationalError:
        print(f"ewi dashboard: the warehouse cannot be reached to end {name}'s open sessions now; "
              "the dashboard ends each at its next page", file=sys.stderr)
        return
    print(f"{ended} open session(s) of {name} ended")


def _read_password() -> str:
    import getpass

    return sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass()


def cmd_dashboard(args: argparse.Namespace) -> int:
    from ewi.dashboard import users

    action = "delete-user" if args.action == "remove-user" else args.action
    if action == "list-users":
        found = users.load_users()
        from_env = users.environment_users()
        if args.json:
            for u in found.values():
                _print_json({"username": u.username, "role": u.role, "disabled": u.disabled,
                             "source": "environment" if u.username in from_env else "file"})
        else:
            print(f"{'user':<24} {'role':<12} {'status':<9} source")
            for u in sorted(found.values(), key=lambda u: u.username):
                print(f"{u.username:<24} {u.role:<12} {'disabled' if u.disabled else 'enabled':<9} "
                      f"{'EWI_DASHBOARD_USERS' if u.username in from_env else users.users_file()}")
        return EXIT_OK
    if action == "end-sessions":
        if not args.name:
            print("ewi dashboard end-sessions NAME", file=sys.stderr)
            return EXIT_USAGE
        _end_sessions(args.name)
        return EXIT_OK
    if action in ("add-user", "set-role", "disable-user", "enable-user", "delete-user"):
        if not args.name or (action in ("add-user", "set-role") and not args.role):
            role = " --role coordinator|auditor" if action in ("add-user", "set-role") else ""
            print(f"ewi dashboard {action} NAME{role}", file=sys.stderr)
            return EXIT_USAGE
        try:
            if action == "add-user":
                password = _read_password()
                if len(password) < 10:
                    print("ewi dashboard: a password needs at least 10 characters", file=sys.stderr)
                    return EXIT_USAGE
                users.set_user(args.name, args.role, password)
                print(f"user {args.name} ({args.role}) saved to {users.users_file()}")
            elif action == "set-role":
                users.set_role(args.name, args.role)
                print(f"user {args.name} is now {args.role} (open sessions get the role at their next page)")
            elif action in ("disable-user", "enable-user"):
                users.set_disabled(args.name, action == "disable-user")
                print(f"user {args.name} {'disabled' if action == 'disable-user' else 'enabled'}")
                if action == "disable-user":
                    _end_sessions(args.name)
            else:
                if not users.remove_user(args.name):
                    print(f"ewi dashboard: no user {args.name} in {users.users_file()}", file=sys.stderr)
                    return EXIT_USAGE
                print(f"user {args.name} removed from {users.users_file()}")
                _end_sessions(args.name)
        except users.UserChangeRefused as exc:
            print(f"ewi dashboard: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return EXIT_OK
    if args.demo_users:
        import secrets

        # Demo only: fresh passwords on every start, shown once, so a rerun of `make demo` can log in.
        for name, role in users.DEMO_USERS.items():
            password = secrets.token_urlsafe(9)
            users.set_user(name, role, password)
            print(f"Demo login: {name} / {password}", flush=True)
    port = _dashboard_port(args.host, args.port)
    if port is None:
        return EXIT_OK
    from ewi.dashboard.server import serve

    serve(host=args.host, port=port)
    return EXIT_OK


def cmd_briefing(args: argparse.Namespace) -> int:
    """The weekly briefing PDF of the latest complete week, or of --week."""
    from ewi.dashboard import briefing

    try:
        week = briefing.parse_week(args.week) if args.week else None
    except ValueError:
        raise UsageError("--week takes an ISO week, YYYY-Www (e.g. 2026-W47)") from None
    week = briefing.write(Path(args.out), week, args.lang)
    print(f"briefing of week {briefing.fmt_week(week)} written to {args.out}")
    return EXIT_OK


def _dashboard_port(host: str, wanted: int) -> int | None:
    """The port to serve on: `wanted` when free; None when this EWI_HOME's dashboard already
    serves there (it is reused: it reads the users file on every request, so new demo passwords
    work there too); else the next free port. Says which process holds `wanted`."""
    from ewi import config, ports

    if ports.is_free(wanted, host):
        return wanted
    held_by = ports.holder(wanted)
    if held_by and held_by.ewi_home == str(config.ewi_home()) and "dashboard" in held_by.command:
        print(f"Dashboard: http://{host}:{wanted}/ (already running: {held_by.describe()}; reusing it)",
              flush=True)
        return None
    port = ports.free_port(wanted, host)
    print(f"ewi dashboard: port {wanted} is in use by {held_by.describe() if held_by else 'another process'}; "
          f"serving on port {port}", flush=True)
    return port


def cmd_retention(args: argparse.Namespace) -> int:
    """Apply the retention policy (README: Retention); --dry-run only says what would go."""
    from ewi import retention, warehouse_init

    warehouse_init.init_warehouse()
    summary = retention.apply(dry_run=args.dry_run)
    if args.json:
        _print_json(summary)
    else:
        verb = "would delete" if args.dry_run else "deleted"
        print(f"retention: pseudonymous rows kept from {summary['kept_from_week']}; {verb} "
              f"{summary['rows']} rows and {summary['files']} files ({summary['bytes']} bytes)")
        for d in summary["deletions"]:
            print(f"  {d['action']:<15} {d['target']} {d['item'] or ''}: "
                  f"{d['rows']} rows, {d['files']} files, {d['bytes']} bytes")
    return EXIT_OK


def cmd_erase(args: argparse.Namespace) -> int:
    """Erase one person's rows and files. `--pseudonym -` reads it from stdin (keeps it out of the
    shell history and the process list). Neither the pseudonym nor a hash of it is printed or stored."""
    from ewi import retention, warehouse_init

    pseudonym = sys.stdin.readline().strip() if args.pseudonym == "-" else args.pseudonym
    warehouse_init.init_warehouse()
    try:
        summary = retention.erase(pseudonym, erased_by=args.by, reference=args.reference,
                                  rebuild=not args.no_rebuild)
    except ValueError as exc:  # the messages never repeat the value given
        raise UsageError(str(exc)) from None
    if args.json:
        _print_json(summary)
    else:
        print(f"erasure {summary['erasure']}: {summary['rows']} rows and {summary['files']} files removed; "
              f"rebuild: {summary['rebuild']}")
    return EXIT_OK if summary["rebuild"] != "failed" else EXIT_GATE


def cmd_airflow(args: argparse.Namespace) -> int:
    from ewi.orchestration import local_airflow

    return local_airflow.main(args)


def cmd_settings(args: argparse.Namespace) -> int:
    """The configuration: the README's table (generated from ewi.settings), or the values in force
    with secrets masked, or only the check that every value can be used and every EWI_* variable
    is a setting (exit 2 naming the bad ones)."""
    from ewi import settings

    if args.action == "table":
        if args.readme:
            from ewi import config

            readme = config.PROJECT_ROOT / "README.md"
            readme.write_text(settings.readme_with_table(readme.read_text(encoding="utf-8")), encoding="utf-8")
            print(f"the settings table in {readme} is up to date")
        else:
            print(settings.markdown_table(), end="")
        return EXIT_OK
    current = settings.get_settings()  # raises SettingsError (exit 2) naming every bad value
    if args.action == "show":
        for field in settings.Settings.model_fields:
            value = getattr(current, field)
            if settings.is_secret(field):
                shown = "" if value is None else "**********"
            elif isinstance(value, tuple):
                shown = ",".join(value)
            elif isinstance(value, bool):
                shown = "1" if value else "0"
            elif isinstance(value, float) and value.is_integer():
                shown = str(int(value))
            else:
                shown = "" if value is None else str(value)
            source = "set" if settings.was_set(current, field) else "default"
            print(f"{settings.variable(field)}={shown}  # {source}")
    else:
        unknown = settings.unknown_variables()
        if unknown:
            raise UsageError("configuration: " + ", ".join(unknown) + " " + ("is" if len(unknown) == 1 else "are")
                             + " no EWI setting (a typo, or a renamed one?); see `ewi settings table`")
        print("configuration valid")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ewi", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of a failure (also EWI_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("warehouse", help="the PostgreSQL warehouse")
    p.add_argument("action", choices=["url", "dbt-env", "stop", "init", "set-role-passwords"])
    p.set_defaults(func=cmd_warehouse)

    p = sub.add_parser("synth", help="write synthetic weekly extracts")
    p.add_argument("--out", required=True)
    p.add_argument("--weeks", type=int, default=104)
    p.add_argument("--end-week", default=None, help="last ISO week, YYYY-Www (default: last complete week)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-rises", action="store_true", help="inject no area-level rises (false-alarm runs)")
    p.add_argument("--co-rises", type=int, default=0, metavar="N",
                   help="also inject N co-occurring rises: absence, reports of concern and contacts of one "
                        "area rising together, each weakly (ground_truth.json: co_rises)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("ingest", help="write-audit-publish delivered files")
    p.add_argument("paths", nargs="+")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("quarantine", help="list or release quarantined batches")
    p.add_argument("action", choices=["list", "release"])
    p.add_argument("batch", nargs="?")
    p.add_argument("--reason")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_quarantine)

    p = sub.add_parser("reversible-pseudonyms",
                       help="list published batches whose pseudonyms are unkeyed hashes of identity numbers")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reversible_pseudonyms)

    p = sub.add_parser("audit", help="verify the audit trail's hash chain")
    p.add_argument("action", choices=["verify"])
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-record", action="store_true",
                   help="do not record this verification in audit.chain_verifications")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("backup", help="a consistent copy of the warehouse and EWI_HOME's state, into DIR")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="restore a backup DIR into the (empty) warehouse EWI_HOME or the DSN names")
    p.add_argument("dir")
    p.add_argument("--force", action="store_true",
                   help="replace a warehouse that already holds data (its tables are dropped)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("transform", help="dbt build of the indicator models")
    p.add_argument("--json", action="store_true")
    p.add_argument("--select", default=None)
    p.add_argument("--full-refresh", action="store_true")
    p.set_defaults(func=cmd_transform)

    p = sub.add_parser("disclosure-audit", help="check that no suppressed cell can be narrowed from published")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_disclosure_audit)

    p = sub.add_parser("dashboard", help="serve the dashboard, or administer its local users")
    p.add_argument("action", nargs="?", default="serve", choices=[
        "serve", "list-users", "add-user", "set-role", "disable-user", "enable-user", "delete-user",
        "remove-user", "end-sessions"])
    p.add_argument("name", nargs="?")
    p.add_argument("--role", choices=["coordinator", "auditor"])
    p.add_argument("--demo-users", action="store_true",
                   help="(demo) create the users coordinator and auditor with new passwords and print them")
    p.add_argument("--json", action="store_true", help="list-users: one JSON object per user")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8050)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("briefing", help="the weekly briefing PDF for the cross-agency meeting")
    p.add_argument("--out", required=True, help="the PDF file to write")
    p.add_argument("--week", default=None, help="ISO week, YYYY-Www (default: the latest complete week)")
    p.add_argument("--lang", choices=["sv", "en"], default="sv")
    p.set_defaults(func=cmd_briefing)

    p = sub.add_parser("settings", help="the EWI_* settings: the README table, the values in force, or a check")
    p.add_argument("action", choices=["table", "show", "check"])
    p.add_argument("--readme", action="store_true", help="(table) rewrite the table in README.md in place")
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("retention", help="apply the retention policy to rows and files")
    p.add_argument("action", choices=["apply"])
    p.add_argument("--dry-run", action="store_true", help="say what would be deleted; delete nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_retention)

    p = sub.add_parser("erase", help="erase one person's rows and files everywhere, then rebuild")
    p.add_argument("--pseudonym", required=True, help="the person's pseudonym, or - to read it from stdin")
    p.add_argument("--by", default=None, help="who asked for or made the erasure (default: the OS user)")
    p.add_argument("--reference", default=None, help="a case number for the audit (1-40 of A-Z a-z 0-9 _ . / -)")
    p.add_argument("--no-rebuild", action="store_true", help="leave the rebuild to the next build")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_erase)

    p = sub.add_parser("airflow", help="the local Airflow")
    p.add_argument("action", choices=["up", "down", "demo-run", "env"])
    p.add_argument("--landing", default=None)
    p.set_defaults(func=cmd_airflow)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage; exits 2 on usage errors
        code = int(exc.code or 0)
        if code and "--json" in argv:
            _print_json({**UsageError("the command line is not valid; see the usage above "
                                      "(ewi --help)").as_dict(), "command": next(iter(argv), None)})
        return code
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    def run() -> int:
        if args.command != "settings":
            # Every command stops here, before any work, when a setting has a value it cannot use
            # (SettingsError: exit 2, naming the variable).
            get_settings()
        return args.func(args)

    return answer(run, command=args.command,
                  json_output=bool(getattr(args, "json", False)), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
