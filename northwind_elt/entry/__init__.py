"""Entry points: the `nw` command, `nw run`, status, docs, the local Airflow and the local services start-up."""
