"""Executors: how agents are started, watched and stopped (local processes; Slurm later).

Every executor implements :class:`~hpcsnap.executors.base.Executor`; the agent it starts does
the rest (staging, running, snapshots, results) and reports to the server itself.
"""
