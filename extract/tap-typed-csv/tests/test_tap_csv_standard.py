"""The Singer SDK's built-in tap tests, on the fixtures shipped in tests/fixtures."""

from __future__ import annotations

from pathlib import Path

from singer_sdk.testing import get_tap_test_class

from tap_typed_csv.tap import TapCSV

FIXTURES = Path(__file__).resolve().parent / "fixtures"

CONFIG = {
    "files": [
        {
            "stream": "order_details",
            "path": str(FIXTURES / "order_details.csv"),
            "key": ["order_id", "product_id"],
            "columns": {
                "order_id": "integer",
                "product_id": "integer",
                "unit_price": "number",
                "quantity": "integer",
                "discount": "number",
            },
        },
        {
            "stream": "people",
            "path": str(FIXTURES / "people.csv"),
            "key": ["given_name", "family_name"],
            "columns": {
                "given_name": "string",
                "family_name": "string",
                "date_of_birth": "date",
                "place_of_birth": "string",
            },
        },
        {
            "stream": "places",
            "path": str(FIXTURES / "places.csv"),
            "key": ["city", "country"],
            "columns": {"city": "string", "county": "string", "country": "string"},
        },
        {
            "stream": "typed",
            "path": str(FIXTURES / "typed.csv"),
            "key": ["id"],
            "columns": {
                "id": "integer",
                "label": "string",
                "price": "decimal(10,2)",
                "amount": "number",
                "day": "date",
                "at": "timestamp",
                "active": "boolean",
            },
        },
    ]
}

TestTapCSV = get_tap_test_class(TapCSV, config=CONFIG)
