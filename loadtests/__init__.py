"""Load tests for QueueTasks: a Locust workload, baseline SSE servers and the scale harness.

Run by hand or by ``python -m loadtests.scale``; only a small smoke version runs under pytest.
"""
