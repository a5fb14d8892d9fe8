"""northwind-elt: four ELT pipelines on one Meltano protocol.

Layers, top-down (each imports only the ones below it; `make lint` checks the walls):
  entry      the `nw` command, `nw run`, status, docs, the local Airflow, the local stand-ins' start-up
  pipelines  the registry and one folder per pipeline: its definition, outputs and own commands
  protocol   what every pipeline shares and none is named in: definitions, begin/commit,
             the gate, the load swap, dbt results, outputs, the Meltano-job runner
  core       day, errors, settings, ledger, locks, manifests, files
  local      the local stand-ins (embedded Postgres, mock ads API, S3 server): no pipeline imports them
"""
