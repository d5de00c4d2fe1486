"""`S3BlobStore`: blobs as objects in a bucket of S3-compatible object storage, through `obstore`
(the Python binding of Rust's `object_store`: async, streaming, multipart; the `s3` extra).

    blobs = S3BlobStore.connect(bucket="kaiwa-files", prefix="kaiwa/",
                                endpoint="http://127.0.0.1:9000", allow_http=True)
    key = await blobs.save_stream(chunks)   # object "kaiwa/3f/3fa85f64…"

Deliberate oddities:
- Settings left unset are not passed on, so the usual `AWS_*` variables and AWS's credential chain
  (web identity, an ECS or EC2 role) apply.
- A stream is uploaded in 5 MiB parts (S3's smallest), one part in flight while the next is
  read: an upload holds about two parts, whatever the file's size. A failed upload is aborted;
  one cut off by a crash leaves invisible parts, which a bucket lifecycle rule
  (AbortIncompleteMultipartUpload) removes.
- obstore reports a missing object as the built-in `FileNotFoundError`.
- A request has `REQUEST_TIMEOUT` to finish, its body included: long enough for a slow client
  to download a file through kaiwa (reqwest's default of 30 s is not).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING

import obstore
from obstore.store import S3Store

from kaiwa.files.storage import CHUNK_SIZE, Blob, BlobNotFound, check_key, new_key

if TYPE_CHECKING:
    from obstore import BytesStream
    from obstore.store import ClientConfig, S3Config

__all__ = ["S3BlobStore"]

PART_SIZE = 5 * 1024 * 1024
REQUEST_TIMEOUT = timedelta(minutes=30)


class _S3Blob:
    def __init__(self, stream: BytesStream, *, size: int) -> None:
        self.size = size
        self._stream: BytesStream | None = stream

    async def chunks(self) -> AsyncIterator[bytes]:
        stream = self._stream
        if stream is None:
            return
        try:
            async for chunk in stream:
                yield chunk
        finally:
            self._stream = None

    async def aclose(self) -> None:
        # Dropping the stream drops its response, which closes the connection.
        self._stream = None


class S3BlobStore:
    """Blobs as objects of one bucket, under a prefix."""

    def __init__(self, store: S3Store, *, chunk_size: int = CHUNK_SIZE) -> None:
        self.store = store
        self.chunk_size = chunk_size

    @classmethod
    def connect(
        cls,
        *,
        bucket: str,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        allow_http: bool = False,
    ) -> S3BlobStore:
        """A store for `bucket`; nothing is sent until the first call."""
        config: S3Config = {}
        if endpoint:
            config["endpoint"] = endpoint
        if region:
            config["region"] = region
        if access_key_id:
            config["access_key_id"] = access_key_id
        if secret_access_key:
            config["secret_access_key"] = secret_access_key
        client: ClientConfig = {"allow_http": allow_http, "timeout": REQUEST_TIMEOUT}
        store = S3Store(bucket, prefix=prefix or None, config=config, client_options=client)
        return cls(store)

    async def save(self, data: bytes) -> str:
        key = new_key()
        await obstore.put_async(self.store, key, data)
        return key

    async def save_stream(self, chunks: AsyncIterable[bytes]) -> str:
        key = new_key()
        await obstore.put_async(self.store, key, chunks, chunk_size=PART_SIZE, max_concurrency=1)
        return key

    async def read(self, key: str) -> bytes:
        try:
            result = await obstore.get_async(self.store, check_key(key))
            return bytes(await result.bytes_async())
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    async def open(self, key: str) -> Blob:
        try:
            result = await obstore.get_async(self.store, check_key(key))
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        stream = result.stream(min_chunk_size=self.chunk_size)
        return _S3Blob(stream, size=result.meta["size"])

    async def delete(self, key: str) -> None:
        await obstore.delete_async(self.store, check_key(key))
