"""Measurement code (edge bench, edge eval): needs the [lab] extra, never used by the node."""
