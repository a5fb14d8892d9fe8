"""The Singer SDK's target tests (the selection the parent target runs), against the test server."""

from __future__ import annotations

from singer_sdk.testing import get_target_test_class
from singer_sdk.testing.suites import SingerTestSuite
from singer_sdk.testing.target_tests import (
    TargetArrayData,
    TargetCamelcaseComplexSchema,
    TargetCamelcaseTest,
    TargetCliPrintsTest,
    TargetDuplicateRecords,
    TargetInvalidSchemaTest,
    TargetNoPrimaryKeys,
    TargetOptionalAttributes,
    TargetRecordBeforeSchemaTest,
    TargetRecordMissingKeyProperty,
    TargetRecordMissingOptionalFields,
    TargetSchemaNoProperties,
    TargetSchemaUpdates,
    TargetSpecialCharsInAttributes,
)

from embedded_pg import CONFIG
from target_postgres_arrow.target import TargetPostgresArrow

# As in meltanolabs-target-postgres' own test_sdk.py: Postgres text holds no NUL (TargetEncodedStringData)
# and the stock target emits one STATE at the end (TargetMultipleStateMessages).
SUITE = SingerTestSuite(
    kind="target",
    tests=[
        TargetArrayData,
        TargetCamelcaseComplexSchema,
        TargetCamelcaseTest,
        TargetCliPrintsTest,
        TargetDuplicateRecords,
        TargetInvalidSchemaTest,
        TargetNoPrimaryKeys,
        TargetOptionalAttributes,
        TargetRecordBeforeSchemaTest,
        TargetRecordMissingKeyProperty,
        TargetSchemaNoProperties,
        TargetSchemaUpdates,
        TargetSpecialCharsInAttributes,
        TargetRecordMissingOptionalFields,
    ],
)

TestTargetPostgresArrow = get_target_test_class(
    TargetPostgresArrow,
    config={**CONFIG, "default_target_schema": "sdk_standard"},
    custom_suites=[SUITE],
    include_target_tests=False,
)
