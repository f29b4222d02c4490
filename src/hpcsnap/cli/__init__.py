"""The ``hpcsnap`` command: server administration here, everything else through the SDK."""
