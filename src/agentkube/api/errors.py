"""API-layer errors.

UserError
└── ManifestError     a manifest cannot be read or does not validate: names file, field, fix
"""

from __future__ import annotations

from agentkube.errors import UserError


class ManifestError(UserError):
    """A manifest is malformed or invalid."""
