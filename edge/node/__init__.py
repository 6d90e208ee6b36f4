"""The camera node: sources, tracker, the per-frame pipeline and its wiring."""
