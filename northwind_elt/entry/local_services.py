"""`nw db up`, `nw ads up|down`, `nw padam up`: start the local stand-ins a pipeline uses on
this machine (embedded Postgres, the mock ads API, the S3 server), then the pipeline's own
set-up. A setting that points elsewhere (a real database, AWS) is left alone.

This is the only place that joins the local stand-ins (`northwind_elt.local`) to the
pipelines: no pipeline module imports them.
"""

from __future__ import annotations

from northwind_elt.core import settings
from northwind_elt.local import postgres as embedded
from northwind_elt.local import services
from northwind_elt.pipelines.ads import commands as ads
from northwind_elt.pipelines.ads import config as ads_config
from northwind_elt.pipelines.padam import commands as padam

SEED = "data/northwind.sql"


def _on_embedded(*prefixes: str) -> bool:
    targets = [settings.pg_conn(prefix) for prefix in prefixes]
    return all(t.host in ("127.0.0.1", "localhost") and t.port == embedded.port() for t in targets)


def db_up() -> None:
    embedded.up(settings.project_root() / SEED)


def _ads_services(cfg: ads_config.AdsSettings):
    found = []
    api_port = ads_config.local_port(cfg.api_url)
    if api_port is not None:
        found.append(
            (
                services.Service("api", "ads API", f"{cfg.api_url}/health", api_port),
                lambda: services.api_command(api_port, cfg.api_fixture),
            )
        )
    s3_port = ads_config.local_port(cfg.s3_endpoint_url)
    if s3_port is not None:
        from northwind_elt.local import s3server

        def s3_command() -> list[str]:
            s3server.install()
            return s3server.command(cfg.s3_data_dir, s3_port)

        found.append((services.Service("s3", "S3 server (s3rver)", f"{cfg.s3_endpoint_url}/", s3_port), s3_command))
    return found


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
    for service, command in _ads_services(cfg):
        try:
            if service.name == "s3":
                cfg.s3_data_dir.mkdir(parents=True, exist_ok=True)
            lines.append(services.start(service, command()))
        except (services.ServiceError, OSError) as err:
            raise ads.AdsError("up", None, str(err), None, "nw ads up") from None
        except Exception as err:  # s3rver's install (npm) names its own failure
            raise ads.AdsError("up", None, f"{service.what}: {err}", None, "nw ads up") from None
    return "\n".join([*lines, *ads.setup()])


def ads_down() -> str:
    cfg = ads_config.load()
    stopped = [services.stop(service) for service, _ in _ads_services(cfg)]
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
