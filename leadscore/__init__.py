"""Leadscore: the console script and settings (thin wiring, no logic)."""
