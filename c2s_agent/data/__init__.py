"""Reading, inspecting and normalising AnnData; the bundled demo datasets."""

from .io import ROOM, DataReport, ensure_room, estimated_size, inspect, prepare, read, read_demo, write

__all__ = ["ROOM", "DataReport", "ensure_room", "estimated_size", "inspect", "prepare", "read", "read_demo", "write"]
