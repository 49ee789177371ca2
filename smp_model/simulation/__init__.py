"""Simulated detections with known truth: configuration (`config`), the truth record
(`truth`), the simulated field (`field`), one detection on disk (`detection`), a small
survey (`survey`) and the built-in demo (`demo`).
"""
