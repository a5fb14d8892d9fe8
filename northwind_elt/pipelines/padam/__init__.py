"""PADAM monthly stats: the generator, the warehouse merge, the stats files and their commands.

`nw padam ...` (commands.py; this text is its help, kept here so `nw` builds its parser
without importing the pipeline's database clients):

  nw padam insert-month YEAR MONTH     replace the month in production (RANDOM_MAIN_CONTROLLER rows)
  nw padam prepare [--full-refresh]    meltano run padam-prepare: incremental EL, merge, dbt build
  nw padam export YEAR MONTH           the month's stats files and the year to date
  nw padam reconcile                   count and sum per month, production vs warehouse; exported
                                       files that no longer match production, marked _STALE
  nw padam up                          start the embedded server if PADAM lives on it, else check
  nw padam merge                       (Meltano task of padam-prepare) apply the landed rows, reconcile

The unit of PADAM is a calendar month, not a day: none of these takes --date.
"""
