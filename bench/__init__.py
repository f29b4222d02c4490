"""Benchmarks of hpcsnap's snapshots against cp, rsync, find and restic (see bench/README.md)."""
