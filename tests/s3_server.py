"""A real S3-protocol server on loopback for the tests: moto's server mode as a child process on a
free port, stopped by its own pid. Buckets are made, and looked into, through the S3 API.

    with running_s3_server() as server:      # or S3Server(), .start() and .stop()
        server.endpoint                        # http://127.0.0.1:<port>
        server.create_bucket("kaiwa-files")
        blobs = server.blob_store("kaiwa-files", prefix="kaiwa/")   # an S3BlobStore of it
        server.keys("kaiwa-files")             # every object's key, the prefix included
        server.multipart_uploads("kaiwa-files")

moto checks no signature: any key pair does (`ACCESS_KEY`, `SECRET_KEY`).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
from tests.redis_server import free_port

from kaiwa.files.s3 import S3BlobStore

ACCESS_KEY = "kaiwa-test"
SECRET_KEY = "kaiwa-test-secret"
REGION = "us-east-1"
STARTUP_TIMEOUT = 20.0


class S3Server:
    """`python -m moto.server` on 127.0.0.1."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self, bucket: str, prefix: str = "kaiwa/") -> dict[str, str]:
        """The `KAIWA_*` variables of a kaiwa server that keeps its files in `bucket`."""
        return {
            "KAIWA_FILES_BACKEND": "s3",
            "KAIWA_S3_BUCKET": bucket,
            "KAIWA_S3_PREFIX": prefix,
            "KAIWA_S3_ENDPOINT": self.endpoint,
            "KAIWA_S3_REGION": REGION,
            "KAIWA_S3_ACCESS_KEY_ID": ACCESS_KEY,
            "KAIWA_S3_SECRET_ACCESS_KEY": SECRET_KEY,
            "KAIWA_S3_ALLOW_HTTP": "true",
        }

    def blob_store(self, bucket: str, *, prefix: str = "kaiwa/") -> S3BlobStore:
        return S3BlobStore.connect(
            bucket=bucket,
            prefix=prefix,
            endpoint=self.endpoint,
            region=REGION,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            allow_http=True,
        )

    def start(self) -> None:
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(timeout=0.5, trust_env=False) as probe:
            while True:
                try:
                    probe.get(f"{self.endpoint}/moto-api/")
                    return
                except httpx.TransportError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"moto did not start on {self.port}") from None
                    time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def client(self) -> Any:
        """A boto3 S3 client of this server (boto3 has no types of its own: `Any`)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def multipart_uploads(self, bucket: str) -> list[str]:
        """Keys of multipart uploads begun and neither completed nor aborted."""
        listing = self.client().list_multipart_uploads(Bucket=bucket)
        return [upload["Key"] for upload in listing.get("Uploads", [])]


@contextlib.contextmanager
def running_s3_server() -> Iterator[S3Server]:
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.stop()
