"""The agent: runs next to one task (same node), does all of its heavy I/O.

It stages the resource buckets into the task's working directory, runs the command with that
directory at ``/job`` (unprivileged, in its own mount and PID namespaces when it can), ships its
stdout/stderr, takes snapshots (periodic, manual via long-poll, from inside the job) with the
snapshot engine, uploads the final results, and reports everything to the server over HTTP.
It keeps the task running when the server goes away, and reports again once it is back.
"""
