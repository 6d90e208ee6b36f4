"""Publishable reports rendered from hub data (outside edge.hub: they may use matplotlib)."""
