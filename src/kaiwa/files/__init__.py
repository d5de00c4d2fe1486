"""Files uploaded for chats: their bytes (`storage`, kept by `local` or `s3`, chosen by
`backends`), what is accepted (`types`), taking an upload in (`uploads`), ephemeral expiry
(`expiry`), and the `lookup` tool's search (`lookup`).

Rows live in the database (`kaiwa.store.files`); bytes in a `BlobStore`.
"""

from __future__ import annotations

from kaiwa.files.backends import BlobStoreUnavailable, open_blob_store
from kaiwa.files.expiry import sweep
from kaiwa.files.local import FileStore
from kaiwa.files.lookup import LookupHit, lookup
from kaiwa.files.storage import Blob, BlobNotFound, BlobStore
from kaiwa.files.types import ACCEPTED, detect_type
from kaiwa.files.uploads import upload

__all__ = [
    "ACCEPTED",
    "Blob",
    "BlobNotFound",
    "BlobStore",
    "BlobStoreUnavailable",
    "FileStore",
    "LookupHit",
    "detect_type",
    "lookup",
    "open_blob_store",
    "sweep",
    "upload",
]
