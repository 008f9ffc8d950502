"""Orchestration: which runs a reproduction needs (:mod:`.matrix`), and where they train: here, one after another
(:mod:`.inline`), or as SLURM jobs / local processes through submitit (:mod:`.cluster`); :mod:`.reproduce` is
``lsnc reproduce``."""
