"""The Singer SDK's built-in target tests (day and folders come from conftest's environment)."""

from __future__ import annotations

from singer_sdk.testing import get_target_test_class

from target_parquet.target import TargetParquet

TestTargetParquet = get_target_test_class(TargetParquet, config={"step": "extract-postgres"})
