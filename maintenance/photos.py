"""Inspection photos: size-limited, type-checked by their first bytes, stored in the DB or a folder.

Only JPEG, PNG and WebP are taken, whatever name or content type the upload claims: the type is
read from the file's magic bytes. A folder store writes ``<sha256>.<ext>`` atomically (write,
then rename) and keeps the bytes out of the database; the row records the name.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from core.models_maintenance import InspectionPhoto
from maintenance.errors import NotFound, PhotoRejected

MAX_PHOTO_BYTES = 5 * 1024 * 1024
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}


def sniff_image(data: bytes) -> str | None:
    """``image/jpeg``, ``image/png`` or ``image/webp`` from the magic bytes, else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_photo(data: bytes, max_bytes: int = MAX_PHOTO_BYTES) -> str:
    """The photo's content type, or PhotoRejected saying why it cannot be taken."""
    if len(data) > max_bytes:
        raise PhotoRejected(
            f"photo is {len(data)} bytes; at most {max_bytes} bytes ({max_bytes // 1048576} MiB)",
            too_large=True,
        )
    if not data:
        raise PhotoRejected("photo is empty")
    content_type = sniff_image(data)
    if content_type is None:
        raise PhotoRejected("photo must be a JPEG, PNG or WebP image (judged by its content)")
    return content_type


@dataclass(frozen=True, slots=True)
class PhotoStore:
    """Where photos go: ``folder`` None keeps them in the database."""

    folder: Path | None = None
    max_bytes: int = MAX_PHOTO_BYTES

    def save(self, session: Session, data: bytes, now: datetime) -> InspectionPhoto:
        content_type = check_photo(data, self.max_bytes)
        digest = hashlib.sha256(data).hexdigest()
        photo = InspectionPhoto(
            content_type=content_type, size=len(data), sha256=digest, created_at=now
        )
        if self.folder is None:
            photo.data = data
        else:
            name = f"{digest}.{EXTENSIONS[content_type]}"
            self._write(self.folder / name, data)
            photo.path = name
        session.add(photo)
        session.flush()
        return photo

    def load(self, photo: InspectionPhoto) -> bytes:
        if photo.data is not None:
            return photo.data
        if photo.path is None or self.folder is None:
            raise NotFound(f"photo {photo.id} has no stored bytes here (no photo folder set)")
        try:
            return (self.folder / photo.path).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"photo {photo.id}: file {photo.path} is missing") from None

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        if path.exists():
            return  # the same bytes (same digest) are already there
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
