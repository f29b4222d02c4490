"""Tests of the blob store backends and the content store."""
