"""The client-side signer agrees with botocore's, byte for byte."""

from datetime import UTC, datetime

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kittenfs.s3 import sigv4

NOW = datetime(2026, 12, 3, 8, 30, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("GET", "/photos/cat.jpg", {}),
        ("PUT", "/photos/a%20b/c%2Bd.txt", {"Content-Type": "text/plain"}),
        ("GET", "/photos?list-type=2&prefix=a%2Fb&max-keys=10", {}),
        ("POST", "/photos/big?uploads", {}),
        ("PUT", "/photos/big?partNumber=2&uploadId=abc", {"x-amz-meta-n": "1"}),
    ],
)
def test_authorize_matches_botocore(
    method: str, target: str, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = "127.0.0.1:9000"
    ours = sigv4.authorize(
        method, target, host, "AKID", "secret", sigv4.EMPTY_SHA256, headers, now=NOW
    )

    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: NOW)
    request = AWSRequest(
        method,
        f"http://{host}{target}",
        headers=headers,
    )
    S3SigV4Auth(Credentials("AKID", "secret"), "s3", "us-east-1").add_auth(request)
    theirs = request.headers["Authorization"]
    assert ours["Authorization"].split("Signature=")[1] == theirs.split("Signature=")[1]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"]
