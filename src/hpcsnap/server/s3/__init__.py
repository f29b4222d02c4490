"""The S3-compatible endpoint: hpcsnap's own buckets for S3 clients (boto3, rclone, qarnot).

It serves the bucket index (:mod:`hpcsnap.server.bucketindex`) over the content-addressed blob
store, so what tasks and snapshots publish is visible to S3 clients at once, and what S3
clients upload is what tasks stage. It shares the REST API's port: :class:`~.app.S3Dispatch`
sends every request that carries an AWS signature (``Authorization: AWS4-HMAC-SHA256 ...`` or
``X-Amz-Algorithm`` in the query) to :class:`~.app.S3App`, everything else to the REST app.

Credentials: the access key is the user's email, the secret key one of the user's API tokens
(the pair the qarnot SDK builds from ``GET /v1/info``). Tokens are stored hashed; the S3
endpoint verifies signatures with a copy sealed by a server key (:mod:`.secrets`).

Modules: ``sigv4`` (signatures), ``chunked`` (aws-chunked bodies), ``secrets`` (sealed
tokens), ``access`` (who signed a request), ``body`` (receiving uploads), ``listing``
(listing pages over the index), ``multipart`` (uploads in parts), ``xmlio`` (XML in and out),
``errors`` (S3 error codes), ``call`` (what every operation gets), ``buckets`` and ``objects``
(the operations), ``app`` (routing and the dispatcher).

This package imports nothing at load time so that :mod:`hpcsnap.server.auth` can use
:mod:`.secrets` without a cycle.
"""
