"""S3 errors: the codes and statuses S3 clients know, rendered as S3's XML error document."""

from __future__ import annotations

from xml.sax.saxutils import escape


class S3Error(Exception):
    """An S3 error answer: ``code`` (e.g. ``NoSuchBucket``), HTTP ``status`` and a message
    that says what is wrong; ``fields`` become extra elements (``BucketName``, ``Key``...)."""

    def __init__(self, code: str, message: str, status: int = 400, **fields: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.fields = fields
        self.headers: dict[str, str] = {}

    def to_xml(self, resource: str, request_id: str) -> bytes:
        parts = [
            f"<Code>{escape(self.code)}</Code>",
            f"<Message>{escape(self.message)}</Message>",
            *(f"<{k}>{escape(v)}</{k}>" for k, v in self.fields.items()),
            f"<Resource>{escape(resource)}</Resource>",
            f"<RequestId>{request_id}</RequestId>",
        ]
        body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>"
        return body.encode()


def no_such_bucket(name: str) -> S3Error:
    return S3Error("NoSuchBucket", "The specified bucket does not exist", 404, BucketName=name)


def no_such_key(key: str) -> S3Error:
    return S3Error("NoSuchKey", "The specified key does not exist.", 404, Key=key)


def no_such_upload(upload_id: str) -> S3Error:
    return S3Error(
        "NoSuchUpload",
        "The specified multipart upload does not exist: it was aborted or completed, or "
        "belongs to another bucket, key or user.",
        404,
        UploadId=upload_id,
    )


def invalid_argument(message: str, name: str = "", value: str = "") -> S3Error:
    fields = {"ArgumentName": name, "ArgumentValue": value} if name else {}
    return S3Error("InvalidArgument", message, 400, **fields)


def malformed_xml(detail: str) -> S3Error:
    return S3Error(
        "MalformedXML",
        f"The XML you provided was not well-formed or did not validate against our published "
        f"schema: {detail}",
    )


def not_implemented(what: str) -> S3Error:
    return S3Error("NotImplemented", f"{what} is not implemented by hpcsnap's S3 endpoint.", 501)
