"""Reading, inspecting and normalising AnnData; the bundled demo datasets."""

from .io import DataReport, inspect, prepare, read, read_demo

__all__ = ["DataReport", "inspect", "prepare", "read", "read_demo"]
