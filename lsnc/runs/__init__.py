"""Run folders: the on-disk format (:mod:`.format`) and a run's life cycle (:mod:`.lifecycle`)."""

from ..paths import default_runs_dir
from .format import (CONFIG_COLUMNS, REQUIRED_FINITE, STATUSES, Run, RunDamaged, RunError, damaged_runs, find_runs,
                     load_run, read_json, read_rows_csv, read_status, runs_table, write_rows_csv, write_status)

__all__ = ["CONFIG_COLUMNS", "REQUIRED_FINITE", "STATUSES", "Run", "RunDamaged", "RunError", "damaged_runs",
           "default_runs_dir", "find_runs", "load_run", "read_json", "read_rows_csv", "read_status", "runs_table",
           "write_rows_csv", "write_status"]
