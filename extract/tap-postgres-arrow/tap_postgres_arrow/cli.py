"""The `tap-postgres-arrow` command: the Singer SDK's CLI, but a `--discover` answered by the
discovery cache without loading the SDK, SQLAlchemy or the parent tap (most of a discovery
run's time is their import; Meltano runs one before every sync of this tap).

The short way is taken only for `--config FILE... --discover` whose settings set
`discovery_cache_dir` and connect with host, port, user, password and database (no
`sqlalchemy_url`, SSL certificates or SSH tunnel: their connection is the parent's to make),
and only when the cache holds the catalog of the source's current fingerprint. Anything else,
an error included, goes to the SDK's CLI, which discovers (and fills the cache) as always.
"""

from __future__ import annotations

import logging
import sys
import typing as t

APPLICATION_NAME = "tap_postgres"  # what the parent's connections name themselves
LOGGER = "tap-postgres-arrow"


def main() -> None:
    catalog = cached_discovery(sys.argv[1:])
    if catalog is not None:
        print(catalog)  # as the SDK prints it
        return
    from tap_postgres_arrow.tap import TapPostgresArrow

    TapPostgresArrow.cli()


def _config_files(args: t.Sequence[str]) -> list[str] | None:
    """The --config files of exactly `--config FILE... --discover`, else None."""
    files, discover, position = [], False, 0
    while position < len(args):
        arg = args[position]
        if arg == "--discover" and not discover:
            discover = True
        elif arg == "--config" and position + 1 < len(args):
            position += 1
            files.append(args[position])
        elif arg.startswith("--config="):
            files.append(arg.removeprefix("--config="))
        else:
            return None
        position += 1
    if not discover or not files or "ENV" in files:
        return None
    return files


def cached_discovery(args: t.Sequence[str]) -> str | None:
    """The catalog text a `--discover` would print, if the discovery cache holds it; else None."""
    files = _config_files(args)
    if files is None:
        return None
    try:
        from tap_postgres_arrow.discovery_cache import DiscoveryCache, load_config_files, source_fingerprint

        config = load_config_files(files)
        directory = config.get("discovery_cache_dir")
        schemas = config.get("filter_schemas") or []
        ssh = config.get("ssh_tunnel") or {}
        plain = not (
            config.get("sqlalchemy_url")
            or config.get("ssl_enable")
            or config.get("ssl_client_certificate_enable")
            or (isinstance(ssh, dict) and ssh.get("enable"))
        )
        if not directory or not plain or not isinstance(schemas, list):
            return None
        cache = DiscoveryCache(directory, config)
        if not cache.path.is_file():
            return None
        import psycopg2

        conn = psycopg2.connect(
            host=config["host"],
            port=int(config["port"]),
            dbname=config["database"],
            user=config["user"],
            password=config["password"],
            application_name=APPLICATION_NAME,
        )
        try:
            with conn.cursor() as cursor:
                fingerprint = source_fingerprint(cursor, schemas)
        finally:
            conn.close()
        cached = cache.load(fingerprint)
    except Exception:  # the SDK's own discovery then says what is wrong
        return None
    if cached is None:
        return None
    if cached.notes:
        logging.basicConfig(format="%(asctime)s | %(levelname)-8s | %(name)-30s | %(message)s", stream=sys.stderr)
        logger = logging.getLogger(LOGGER)
        logger.setLevel(logging.INFO)
        for level, text in cached.notes:
            logger.log(level, "%s", text)
    return cached.catalog


if __name__ == "__main__":
    main()
