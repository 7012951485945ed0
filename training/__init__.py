"""Data loading and validation, demo data, snapshots and labels, fit, evaluate, report, register."""
