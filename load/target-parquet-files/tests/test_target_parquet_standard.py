"""The Singer SDK's built-in target tests, writing into a private temporary folder."""

from __future__ import annotations

import tempfile

from singer_sdk.testing import get_target_test_class

from target_parquet_files.target import TargetParquet

OUTPUT_DIR = tempfile.mkdtemp(prefix="target-parquet-standard-")

TestTargetParquet = get_target_test_class(TargetParquet, config={"output_dir": OUTPUT_DIR})
