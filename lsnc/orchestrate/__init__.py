"""Orchestration: which runs a reproduction needs (:mod:`.reproduce`) and where they train (:mod:`.cluster`)."""
