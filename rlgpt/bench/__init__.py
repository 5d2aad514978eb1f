"""Benchmark suites: throughput, learning beside published anchors, model speed, full-loop tasks."""
