"""`nw db up`, `nw s3 up|down|check`, `nw ads up|down`, `nw padam up`: start the local stand-ins a
pipeline uses on this machine (embedded Postgres, the embedded S3 server, the mock ads API), then
the pipeline's own set-up. A setting that points elsewhere (a real database, AWS) is left alone.

The embedded S3 (SeaweedFS, local/s3server.py) is one server for the project: it runs when the
S3 endpoint (ADS_S3_ENDPOINT_URL) is on this machine, keeps its objects in ADS_S3_DATA_DIR
(default $NW_DATA_DIR/s3), its pid file and log in $NW_DATA_DIR/services/, and accepts every key
pair the project's S3 clients are given (S3_KEY_PREFIXES).

This is the only place that joins the local stand-ins (`northwind_elt.local`) to the
pipelines: no pipeline module imports them.
"""

from __future__ import annotations

from collections.abc import Callable

from northwind_elt.core import ledger, s3check, settings
from northwind_elt.core.day import configured_lake
from northwind_elt.core.errors import CommandError
from northwind_elt.local import postgres as embedded
from northwind_elt.local import s3server, services
from northwind_elt.pipelines import PIPELINES
from northwind_elt.pipelines.ads import commands as ads
from northwind_elt.pipelines.ads import config as ads_config
from northwind_elt.pipelines.padam import commands as padam

SEED = "data/northwind.sql"
# The key pairs (<PREFIX>_ACCESS_KEY_ID / <PREFIX>_SECRET_ACCESS_KEY) the embedded S3 accepts:
# the ads pipeline's and the lake's, which reach the same server.
S3_KEY_PREFIXES = ("ADS_S3", "NW_LAKE_S3")


def _on_embedded(*prefixes: str) -> bool:
    targets = [settings.pg_conn(prefix) for prefix in prefixes]
    return all(t.host in ("127.0.0.1", "localhost") and t.port == embedded.port() for t in targets)


def db_up() -> None:
    embedded.up(settings.project_root() / SEED)


# --- the embedded S3 ------------------------------------------------------------------------


def _s3_keys() -> list[s3server.Key]:
    keys = s3server.keys_from_env(S3_KEY_PREFIXES)
    s3server.identities(keys)  # refuses a server without keys
    return keys


def _embedded_s3(cfg: ads_config.AdsSettings) -> tuple[services.Service, Callable[[], list[str]]] | None:
    """The embedded S3 server and its command, when the endpoint is on this machine."""
    port = ads_config.local_port(cfg.s3_endpoint_url)
    if port is None or cfg.s3_endpoint_url is None:
        return None
    url = cfg.s3_endpoint_url
    service = services.Service(
        "s3",
        "S3 server (SeaweedFS)",
        f"{url}/",
        port,
        ready=lambda: s3server.ready(url, _s3_keys()[0], cfg.s3_data_dir),
    )
    return service, lambda: s3server.command(cfg.s3_data_dir, port, _s3_keys(), service.folder / "s3-logs")


def _s3rver(cfg: ads_config.AdsSettings, port: int) -> services.Service:
    """s3rver as `nw ads up` ran it before SeaweedFS: its pid file is under ads/services/."""
    return services.Service(
        "s3", "s3rver (the embedded S3 before SeaweedFS)", f"{cfg.s3_endpoint_url}/", port, home="ads/services"
    )


def _s3_error(action: str, cause: str, fix: str | None = None) -> CommandError:
    return CommandError(f"s3 {action}", None, cause, fix, rerun=f"nw s3 {action}")


def s3_up(cfg: ads_config.AdsSettings | None = None) -> list[str]:
    """Start the embedded S3 server (unless it runs) and import what s3rver left in its data directory."""
    cfg = cfg or ads_config.load()
    found = _embedded_s3(cfg)
    if found is None:
        return [f"S3: {cfg.where()} is not on this machine; nothing to start", *_lake_bucket()]
    service, command = found
    lines = []
    try:
        keys = _s3_keys()
        old = _s3rver(cfg, service.port)
        if services.running_pid(old) is not None:
            lines.append(services.stop(old))
        cfg.s3_data_dir.mkdir(parents=True, exist_ok=True)
        lines.append(services.start(service, command))
        if services.running_pid(service) is not None:  # ours: its data directory is ADS_S3_DATA_DIR
            lines.extend(s3server.import_s3rver(cfg.s3_data_dir, cfg.s3_endpoint_url, keys[0]))
        lines.extend(_lake_bucket())
    except (services.ServiceError, s3server.S3ServerError, OSError) as err:
        raise _s3_error("up", f"{service.what}: {err}") from None
    return lines


def _ever_committed(latest: dict | None) -> bool:
    """The latest attempt succeeded, or a success came before the failures that followed it."""
    if not latest:
        return False
    return latest["status"] == "success" or latest["attempts"] > latest["failed_before"] + 1


def _lake_bucket() -> list[str]:
    """The lake's bucket (NW_LAKE_URL s3://...), created on first use; never in place of one the
    ledger records commits in (an empty bucket there would hide their loss)."""
    lake = configured_lake()
    if not lake.remote:
        return []
    where = f"s3://{lake.bucket} at {lake.storage_options.get('endpoint_url') or 'AWS'}"
    if lake.fs.exists(lake.bucket):
        return []
    committed = [
        f"{pipeline.name} {step.name} {unit}"
        for pipeline in PIPELINES.values()
        for step in pipeline.extract_steps
        # Every day recorded: a day whose latest attempt failed may still have an older commit.
        for unit, entries in ledger.latest_by_unit(pipeline.name, ledger.DAY, None, steps=[step.name]).items()
        if _ever_committed(entries.get(step.name))
    ]
    if committed:
        raise _s3_error(
            "up",
            f"the lake's bucket {where} does not exist, but the ledger {ledger.where()} records commits in it "
            f"(latest: {', '.join(committed[:3])}{', ...' if len(committed) > 3 else ''}); "
            "an empty bucket in its place would hide their loss: it was not created",
            "restore the S3 server's data (the embedded one's: ADS_S3_DATA_DIR), or point NW_LAKE_URL / "
            "NW_LAKE_S3_ENDPOINT_URL at the lake; to start over with an empty lake, create the bucket yourself",
        )
    lake.fs.mkdir(lake.bucket)
    return [f"S3: created the lake's bucket {where}"]


def s3_down(cfg: ads_config.AdsSettings | None = None) -> list[str]:
    cfg = cfg or ads_config.load()
    found = _embedded_s3(cfg)
    if found is None:
        return []
    service, _ = found
    old = _s3rver(cfg, service.port)
    return [services.stop(service)] + ([services.stop(old)] if services.running_pid(old) is not None else [])


def s3_targets(cfg: ads_config.AdsSettings | None = None) -> list[s3check.Target]:
    """Every bucket the project's S3 clients use, as they reach it."""
    cfg = cfg or ads_config.load()
    targets = [s3check.Target(cfg.s3_endpoint_url, cfg.s3_region, cfg.bucket, cfg.access_key_id, cfg.secret_access_key)]
    lake = configured_lake()
    if lake.remote:  # the lake in a bucket: its commits rely on the same conditions
        options = lake.storage_options
        targets.append(
            s3check.Target(
                options.get("endpoint_url"),
                options.get("client_kwargs", {}).get("region_name", "us-east-1"),
                lake.bucket or "",
                options.get("key"),
                options.get("secret"),
            )
        )
    return targets


def s3_check(restart: bool = False) -> tuple[list[str], list[str]]:
    """The conformance check on every configured bucket: (what passed, failures).

    With `restart`, also an object written before a restart of the embedded server (on the
    same data directory) must read back byte-equal.
    """
    cfg = ads_config.load()
    passed, failures = [], []
    for target in s3_targets(cfg):
        found = s3check.check(target)
        failures.extend(found)
        if not found:
            passed.append(
                f"{target.url()} at {target.server}: put/get/head/list/delete, If-None-Match: * refused on an existing "
                f"key, {s3check.WRITERS} racing creates -> 1 winner, stale If-Match refused: ok"
            )
    if restart:
        embedded_s3 = _embedded_s3(cfg)
        if embedded_s3 is None or services.running_pid(embedded_s3[0]) is None:
            failures.append(
                f"--restart checks the embedded S3 server this project runs, and none runs on {cfg.where()} "
                "(start it: nw s3 up)"
            )
        else:
            failures.extend(_restart_check(cfg, *embedded_s3, passed))
    return passed, failures


def _restart_check(
    cfg: ads_config.AdsSettings, service: services.Service, command: Callable[[], list[str]], passed: list[str]
) -> list[str]:
    target = s3_targets(cfg)[0]
    restart = f"a restart on the same data directory {cfg.s3_data_dir}"
    try:
        key, body = s3check.write_marker(target)
    except Exception as err:  # the check above has named why the bucket cannot be written
        return [f"the restart check could not write to {target.url()} at {target.server}: {err}"]
    try:
        services.stop(service)
        services.start(service, command)
    except (services.ServiceError, s3server.S3ServerError, OSError) as err:
        return [f"the {service.what} did not come back after being stopped for the restart check: {err}"]
    lost = s3check.read_marker(target, key, body, restart)
    if not lost:
        passed.append(f"{target.url(key)} read back byte-equal after {restart}: ok")
    return lost


# --- ads ------------------------------------------------------------------------------------


def _ads_api(cfg: ads_config.AdsSettings) -> services.Service | None:
    api_port = ads_config.local_port(cfg.api_url)
    if api_port is None:
        return None
    return services.Service("api", "ads API", f"{cfg.api_url}/health", api_port, home="ads/services", commands="nw ads")


def ads_up() -> str:
    """Start what lives on this machine (Postgres, API, S3), create the bucket and the tables."""
    cfg = ads_config.load()
    settings.require(settings.pg_variables(ads_config.PG), "the ads pipeline's tables live there")
    lines = []
    if _on_embedded(ads_config.PG):
        try:
            db_up()
        except embedded.EmbeddedPostgresError as err:
            raise ads.AdsError("up", None, f"embedded Postgres: {err}", None, "nw ads up") from None
        lines.append(f"Postgres is up on 127.0.0.1:{embedded.port()}")
    api = _ads_api(cfg)
    if api is not None:
        try:
            lines.append(services.start(api, services.api_command(api.port, cfg.api_fixture)))
        except (services.ServiceError, OSError) as err:
            raise ads.AdsError("up", None, str(err), None, "nw ads up") from None
    if _embedded_s3(cfg) is not None:
        try:
            lines.extend(s3_up(cfg))
        except CommandError as err:
            raise ads.AdsError("up", None, err.cause, err.fix, "nw ads up") from None
    return "\n".join([*lines, *ads.setup()])


def ads_down() -> str:
    cfg = ads_config.load()
    api = _ads_api(cfg)
    stopped = ([services.stop(api)] if api is not None else []) + s3_down(cfg)
    return "\n".join(stopped) or "nothing to stop (no local server)"


def padam_up() -> str:
    """Make PADAM's databases answer: start the embedded server when they live on it."""
    settings.require(
        settings.pg_variables(padam.PRODUCTION) + settings.pg_variables(padam.WAREHOUSE),
        "PADAM's databases are reached with them",
    )
    if _on_embedded(padam.PRODUCTION, padam.WAREHOUSE):
        db_up()
        return f"padam: the embedded Postgres is up on 127.0.0.1:{embedded.port()}"
    return padam.check_databases()
