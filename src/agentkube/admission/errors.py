"""Admission-layer errors.

UserError
└── BadReview          the request is not an AdmissionReview v1 of an object (answered 400)
RuntimeFailure
└── ModelUnreadable    the Model an annotation names could not be read now (refused, 503)

A pod whose annotations are wrong is :class:`agentkube.operator.errors.InjectionRefused`.
"""

from __future__ import annotations

from agentkube.errors import RuntimeFailure, UserError


class BadReview(UserError):
    """The webhook was sent something other than an AdmissionReview v1."""


class ModelUnreadable(RuntimeFailure):
    """The API server did not answer for the Model a pod names (or the webhook lacks rights)."""
