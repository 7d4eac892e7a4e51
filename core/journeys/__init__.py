"""The journey engine: runs of the journeys plugins declare, advanced step by step from the hub's outcomes."""
