"""The benchmark harness behind bench/run.py: processes, the load client, shapes, the report."""
