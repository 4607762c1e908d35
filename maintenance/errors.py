"""What can go wrong in maintenance, each a sentence a person can act on.

MaintenanceError
├── PlanError        the inspection-plan file is wrong (names file, plan and field)
├── NotFound         no task / work order / photo with that id          → HTTP 404
├── Conflict         the thing is in the wrong state (already done...)  → HTTP 409
└── InvalidInput     a request is incomplete or malformed               → HTTP 422
    └── PhotoRejected    too large, or not a JPEG, PNG or WebP          → HTTP 413 / 415
"""

from __future__ import annotations


class MaintenanceError(Exception):
    """Base of every maintenance error; ``str(error)`` is the whole message."""


class PlanError(MaintenanceError):
    """The inspection-plan file cannot be used; nothing of it is applied."""


class NotFound(MaintenanceError):
    pass


class Conflict(MaintenanceError):
    pass


class InvalidInput(MaintenanceError, ValueError):
    pass


class PhotoRejected(InvalidInput):
    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large
