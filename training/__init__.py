"""Data loading and validation, demo data, scoring moments and labels, fit, evaluate, report, register."""
