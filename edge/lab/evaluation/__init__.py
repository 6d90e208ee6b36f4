"""Accuracy, fairness and threshold calibration behind ``edge eval``: maths, data, run, report."""
