"""Receive and store uploaded CSV files with bounded memory and a hard size limit.

Two places enforce the limit, because either may be the first to see the bytes: the upload
handler while Django receives the request (so an oversized body is not even spooled to disk),
and `file_store` while the file is copied into storage (any caller, any file object).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.utils import timezone

_CHUNK_BYTES = 64 * 1024
# Room for the multipart boundaries and the small form fields beside the file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


class UploadTooLarge(Exception):
    """The file is over the size limit; the API answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the file must not exceed {limit} bytes")
        self.limit = limit


@dataclass(frozen=True)
class StoredFile:
    name: str  # in default storage
    sha256: str
    size: int


def file_store(source: IO[bytes], *, limit: int) -> StoredFile:
    """Copy `source` into default storage under imports/, hashing it on the way.

    The file is read in chunks, never whole. Raises UploadTooLarge (and leaves nothing in
    storage) as soon as more than `limit` bytes have been read.
    """
    if getattr(source, "seekable", lambda: False)():
        source.seek(0)
    reader = _MeteredReader(source, limit)
    name = f"imports/{timezone.now():%Y/%m/%d}/{uuid.uuid4().hex}.csv"
    try:
        stored = default_storage.save(name, File(reader, name=name))
    except UploadTooLarge:
        default_storage.delete(name)
        raise
    return StoredFile(stored, reader.digest.hexdigest(), reader.size)


class _MeteredReader:
    """A read-only file object that hashes and counts what passes through it.

    It has no seek on purpose: storages then read it once, front to back.
    """

    def __init__(self, source: IO[bytes], limit: int) -> None:
        self._source = source
        self._limit = limit
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(_CHUNK_BYTES if size is None or size < 0 else size)
        if isinstance(chunk, str):
            raise TypeError("open the upload in binary mode")
        self.size += len(chunk)
        if self.size > self._limit:
            raise UploadTooLarge(self._limit)
        self.digest.update(chunk)
        return chunk

    def close(self) -> None:
        """The caller owns the source and closes it."""


class LimitedUploadHandler(FileUploadHandler):
    """Stop receiving an upload as soon as one file passes `limit` bytes.

    Put first in request.upload_handlers, before the request body is read. It only counts and
    passes the data on to Django's handlers (memory for small files, a temporary file for the
    rest). `reset_connection`: stop reading the request at once (API clients), or read and
    discard the rest so a browser gets the answer page (admin).
    """

    def __init__(self, request: Any = None, *, limit: int, reset_connection: bool = True) -> None:
        super().__init__(request)
        self.limit = limit
        self.reset_connection = reset_connection
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=self.reset_connection)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def upload_limit_install(
    request: Any, *, limit: int, reset_connection: bool
) -> LimitedUploadHandler:
    """Put a LimitedUploadHandler in front of the request's upload handlers and return it."""
    handler = LimitedUploadHandler(request, limit=limit, reset_connection=reset_connection)
    request.upload_handlers = [handler, *request.upload_handlers]
    return handler


def upload_limit_exceeded(request: Any) -> bool:
    """True if the request's LimitedUploadHandler stopped an oversized file."""
    return any(
        isinstance(handler, LimitedUploadHandler) and handler.exceeded
        for handler in getattr(request, "_upload_handlers", ())
    )
