"""Which `BlobStore` the settings choose.

    blobs = open_blob_store(settings)   # FileStore(<data_dir>/files), or S3BlobStore

`files_backend = "s3"` needs the `s3` extra (obstore), imported only then; without it, or without
a bucket, the server refuses to start with `BlobStoreUnavailable` saying what to do.
"""

from __future__ import annotations

from kaiwa.config import Settings
from kaiwa.files.local import FileStore
from kaiwa.files.storage import BlobStore

__all__ = ["INSTALL_HINT", "BlobStoreUnavailable", "open_blob_store"]

INSTALL_HINT = (
    "KAIWA_FILES_BACKEND=s3 needs obstore, which is not installed: pip install 'kaiwa[s3]'"
)


class BlobStoreUnavailable(RuntimeError):
    """The configured file storage cannot be used: the server refuses to start."""


def open_blob_store(settings: Settings) -> BlobStore:
    """The store for uploaded files' bytes; no request is made yet."""
    if settings.files_backend == "local":
        return FileStore(settings.files_dir)
    if not settings.s3_bucket:
        raise BlobStoreUnavailable("KAIWA_FILES_BACKEND=s3 needs a bucket: set KAIWA_S3_BUCKET")
    try:
        from kaiwa.files.s3 import S3BlobStore
    except ImportError as exc:
        raise BlobStoreUnavailable(INSTALL_HINT) from exc
    return S3BlobStore.connect(
        bucket=settings.s3_bucket,
        prefix=settings.s3_prefix,
        endpoint=settings.s3_endpoint,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
        allow_http=settings.s3_allow_http,
    )
