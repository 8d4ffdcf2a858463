"""Benchmarks that run real Synapse processes through the test harness."""
