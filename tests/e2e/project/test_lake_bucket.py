"""`nw s3 up` creates the lake's bucket on the embedded S3 on first use, and refuses to create an
empty one in place of a bucket the ledger records commits in (its data directory lost)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

from support import NW, PROJECT, free_port

from northwind_elt.local import s3server


def nw(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NW, *args], env=env, cwd=PROJECT, capture_output=True, text=True, timeout=300)


def test_the_lake_bucket_is_created_once_and_never_in_place_of_a_lost_one(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ADS_", "NW_LAKE_", "RUN_DATE"))},
        "MELTANO_PROJECT_ROOT": str(PROJECT),
        "NW_DATA_DIR": str(tmp_path / "data"),
        "ADS_S3_ENDPOINT_URL": endpoint,
        "ADS_S3_DATA_DIR": str(tmp_path / "s3"),
        "NW_LAKE_URL": "s3://fresh-lake/northwind",
        "NW_LAKE_S3_ENDPOINT_URL": endpoint,
        "NW_LAKE_S3_ACCESS_KEY_ID": s3server.DEFAULT_ACCESS_KEY,
        "NW_LAKE_S3_SECRET_ACCESS_KEY": s3server.DEFAULT_SECRET_KEY,
    }
    try:
        up = nw(env, "s3", "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"created the lake's bucket s3://fresh-lake at {endpoint}" in up.stdout
        again = nw(env, "s3", "up")
        assert again.returncode == 0 and "created the lake's bucket" not in again.stdout
        # A commit recorded in the ledger, then the server's data directory lost.
        record = subprocess.run(
            [
                str(Path(NW).parent / "python"),
                "-c",
                "import datetime as dt; from northwind_elt.core import ledger; "
                f"ledger.record('northwind', dt.date({dt.date(2024, 1, 15):%Y, %-m, %-d}), 'extract-csv', 'success')",
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        assert record.returncode == 0, record.stderr
        assert nw(env, "s3", "down").returncode == 0
        shutil.rmtree(tmp_path / "s3")
        refused = nw(env, "s3", "up")
        assert refused.returncode != 0
        assert f"the lake's bucket s3://fresh-lake at {endpoint} does not exist" in refused.stderr
        assert "latest: northwind extract-csv 2024-01-15" in refused.stderr and "it was not created" in refused.stderr
        s3 = s3server.client(endpoint, s3server.Key(s3server.DEFAULT_ACCESS_KEY, s3server.DEFAULT_SECRET_KEY))
        assert "fresh-lake" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    finally:
        nw(env, "s3", "down")
