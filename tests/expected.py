"""Expected results computed from the sources themselves: the CSV file and the source database
(seeded from the SQL dump). Never from the pipeline's own output."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import psycopg
from support import SOURCE_CSV, read_csv_rows

ORDER_COLUMNS = (
    "customer_id",
    "employee_id",
    "order_date",
    "required_date",
    "shipped_date",
    "ship_via",
    "freight",
    "ship_name",
    "ship_address",
    "ship_city",
    "ship_region",
    "ship_postal_code",
    "ship_country",
)


def source_orders(conn: psycopg.Connection) -> dict[str, dict[str, str | None]]:
    """Orders by id, every value as Postgres prints it (NULL as None)."""
    cols = ", ".join(f"{c}::text" for c in ("order_id", *ORDER_COLUMNS))
    rows = conn.execute(f"SELECT {cols} FROM orders").fetchall()
    return {row[0]: dict(zip(ORDER_COLUMNS, row[1:], strict=True)) for row in rows}


def _lookup(conn: psycopg.Connection, query: str) -> dict[str, str | None]:
    return {key: value for key, value in conn.execute(query).fetchall()}


def expected_mart(conn: psycopg.Connection) -> dict[tuple[str, str], dict[str, str | None]]:
    """One expected export row per CSV line, keyed by (order_id, product_id)."""
    orders = source_orders(conn)
    customers = _lookup(conn, "SELECT customer_id::text, company_name FROM customers")
    products = _lookup(conn, "SELECT product_id::text, product_name FROM products")
    product_category = _lookup(conn, "SELECT product_id::text, category_id::text FROM products")
    categories = _lookup(conn, "SELECT category_id::text, category_name FROM categories")
    employees = _lookup(conn, "SELECT employee_id::text, first_name || ' ' || last_name FROM employees")
    shippers = _lookup(conn, "SELECT shipper_id::text, company_name FROM shippers")
    expected = {}
    for line in read_csv_rows(SOURCE_CSV):
        order = orders[line["order_id"]]
        total = Decimal(line["unit_price"]) * int(line["quantity"]) * (1 - Decimal(line["discount"]))
        expected[(line["order_id"], line["product_id"])] = {
            **order,
            "order_id": line["order_id"],
            "product_id": line["product_id"],
            "unit_price": line["unit_price"],
            "quantity": line["quantity"],
            "discount": line["discount"],
            "line_total": str(total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)),
            "customer_company_name": customers.get(order["customer_id"]),
            "product_name": products.get(line["product_id"]),
            "category_name": categories.get(product_category.get(line["product_id"])),
            "employee_name": employees.get(order["employee_id"]),
            "shipper_name": shippers.get(order["ship_via"]),
        }
    return expected


def same_value(exported: str | None, expected: str | None) -> bool:
    """Numbers compare by value (14 == 14.0); everything else as text; '' is NULL in CSV."""
    if expected is None:
        return exported in (None, "")
    if exported == expected:
        return True
    try:
        return Decimal(exported) == Decimal(expected)
    except Exception:
        return False
