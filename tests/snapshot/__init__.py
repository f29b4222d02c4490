"""Tests of the snapshot engine."""
