"""The control plane: REST API, authentication, task and snapshot records, bucket index, scheduler.

The server never reads or copies job data itself: agents running next to tasks do the heavy I/O
and report to the server over HTTP (``/v1/agent/...``), which commits what they report.
"""
