"""Run folders: the on-disk format (:mod:`.format`), a run's life cycle (:mod:`.lifecycle`: folders, resume checks,
provenance), what one training writes into its folder (:mod:`.record`) and whether two folders hold the same run
(:mod:`.compare`, ``lsnc compare``)."""

from ..paths import default_runs_dir
from .format import (CONFIG_COLUMNS, REQUIRED_FINITE, STATUSES, Run, RunDamaged, RunError, damaged_runs, find_runs,
                     load_run, read_json, read_rows_csv, read_status, runs_table, write_rows_csv, write_status)

__all__ = ["CONFIG_COLUMNS", "REQUIRED_FINITE", "STATUSES", "Run", "RunDamaged", "RunError", "damaged_runs",
           "default_runs_dir", "find_runs", "load_run", "read_json", "read_rows_csv", "read_status", "runs_table",
           "write_rows_csv", "write_status"]
