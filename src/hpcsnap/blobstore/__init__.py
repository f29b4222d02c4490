"""Content-addressed storage of file contents (blobs).

A :class:`~hpcsnap.blobstore.base.Backend` stores opaque byte objects under string keys: a local
directory, or a bucket of an S3-compatible store (:mod:`hpcsnap.blobstore.s3`, wrapped by
:class:`~hpcsnap.blobstore.retry.RetryingBackend`). :class:`~hpcsnap.blobstore.content.ContentStore`
addresses them by the xxh3-128 hash of their content inside one namespace (one per user). This
package knows nothing of buckets, tasks or snapshots.
"""

from hpcsnap.blobstore.base import (
    Backend,
    BlobError,
    BlobNotFound,
    ContentChanged,
    Listed,
    StorageFull,
    TransientBlobError,
)
from hpcsnap.blobstore.content import ContentStore, Stored, hash_file
from hpcsnap.blobstore.local import LocalBackend
from hpcsnap.blobstore.open import open_backend
from hpcsnap.blobstore.retry import RetryingBackend

__all__ = [
    "Backend",
    "BlobError",
    "BlobNotFound",
    "ContentChanged",
    "ContentStore",
    "Listed",
    "LocalBackend",
    "RetryingBackend",
    "StorageFull",
    "Stored",
    "TransientBlobError",
    "hash_file",
    "open_backend",
]
