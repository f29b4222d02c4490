"""hpcsnap: run long HPC simulations as tasks, with incremental snapshots of their /job directory.

Layers, each importing only those below it::

    blobstore  <-  snapshot  <-  agent  <-  executors / server
    sdk        <-  cli
"""

__version__ = "0.1.0"
