"""Accuracy, fairness and threshold calibration tooling (issue 6): maths, data, report."""
