"""The protocol every pipeline shares and none is named in: definitions, begin/commit, gate, swap,
dbt results, outputs and the Meltano-job runner."""
