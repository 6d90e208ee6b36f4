"""The alert hub: receives alerts from nodes, stores them, serves the officers' tablet app."""
