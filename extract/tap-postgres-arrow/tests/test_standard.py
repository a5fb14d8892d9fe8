"""Singer SDK standard tap tests on a small schema (parent RECORD path, and the tap's about/discovery)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from singer_sdk.testing import get_tap_test_class
from tap_postgres_arrow.tap import TapPostgresArrow

from conftest import make_catalog, seeded_server, tap_config

# The stream tests are generated from a live discovery at collection time, so the server starts here.
_CONFIG = tap_config(seeded_server(), "std")

TestTapPostgresArrowStandard = get_tap_test_class(
    TapPostgresArrow,
    config=_CONFIG,
    catalog=make_catalog(_CONFIG, {"std-small": None}),
)


# The same tap-level tests with batch_config: the sync runs on the ADBC/Parquet path.
_BATCH_DIR = tempfile.mkdtemp(prefix="tpa-std-")
atexit.register(shutil.rmtree, _BATCH_DIR, ignore_errors=True)
_BATCH_CONFIG = {
    **_CONFIG,
    "batch_config": {
        "encoding": {"format": "parquet", "compression": "none"},
        "storage": {"root": Path(_BATCH_DIR).as_uri()},
    },
}

TestTapPostgresArrowStandardBatch = get_tap_test_class(
    TapPostgresArrow,
    config=_BATCH_CONFIG,
    catalog=make_catalog(_CONFIG, {"std-small": None}),
    include_stream_tests=False,
    include_stream_attribute_tests=False,
)
