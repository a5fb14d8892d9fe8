"""The ads pipeline: API -> S3 backup -> Postgres, and a daily archive (spec: shared/specs/ads-api.md).

`nw ads ...` (commands.py; this text is its help, kept here so `nw` builds its parser
without importing the pipeline's S3 and database clients):

  nw ads up | down | status            the local API and S3 server (and the embedded Postgres)
  nw ads up --accept-lost-objects      create an empty bucket in place of a lost one the database
                                       records objects in (nw ads status keeps listing them)
  nw ads load [--date D] [--run-id R]  API -> S3 backup (verified) -> Postgres, once per run
  nw ads replay KEY [--run-id R]       a kept refused response (refused/<day>/<run id>.json[l]) as
                                       that run's response: the same checks, backup and insert, no API call
  nw ads archive [--date D]            rows shown before (D 00:00 UTC - ADS_RETENTION_HOURS) -> S3, then deleted

Meltano tasks of the job `ads-load` (they read the day and run id the entry point pinned):
  nw ads begin-load       refuse to overwrite a verified backup; check the settings
  nw ads verify-backup    the backup object: sha256 as written, 100 JSON lines; then the manifest
                          (a response it refuses is kept under refused/)
  nw ads commit           the landed lines -> api_ad_data in one transaction, the lines it cannot
                          take -> ads_meta.quarantine; the ledger

Every line of a response is accounted for: inserted, already there (named with the backup that
inserted it), or quarantined with its line, field and reason (records.py). A refused response is
kept under refused/ (refused.py). A verified backup whose insert failed records.MAX_INSERT_FAILURES
times is held: no load retries it by itself, and each says so.

Every object is created once, with a conditional put, and recorded in ads_meta.objects
(size, sha256). `nw ads status` and `nw status` check that each object the database records
is still in the bucket as written, and name each one missing or changed (integrity.py);
`nw ads up` never creates an empty bucket in place of one those objects were in.
"""
