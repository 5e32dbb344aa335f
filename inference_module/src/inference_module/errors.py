"""Errors of the inference module: one tree, mapped to HTTP statuses in `api.errors` only.

Tree (each class has a stable `code`, the `error.code` of the response body and of metrics):
    InferenceError
    ├── InputError                  the request is wrong; never a 500
    │   ├── EmptyBodyError          empty_body            no image bytes
    │   ├── InvalidImageError       invalid_image         undecodable, truncated or corrupt image
    │   ├── ImageTooSmallError      image_too_small       a side below INFERENCE_MIN_IMAGE_SIDE
    │   ├── BodyTooLargeError       payload_too_large     more than INFERENCE_MAX_IMAGE_BYTES
    │   ├── BodyTimeoutError        body_timeout          body slower than INFERENCE_BODY_TIMEOUT_SECONDS
    │   ├── ClientDisconnectedError client_closed         the client hung up before its body arrived (499)
    │   ├── TooManyPixelsError      too_many_pixels       more than INFERENCE_MAX_IMAGE_PIXELS (bomb guard)
    │   ├── UnsupportedMediaTypeError  unsupported_media_type  Content-Type is not image/* or octet-stream
    │   └── UnsupportedImageFormatError unsupported_image_format  decodable, but not JPEG/PNG/BMP
    ├── AccessError                 the caller may not do this
    │   ├── UnauthorizedError       unauthorized          INFERENCE_API_TOKEN set, no or wrong bearer token
    │   └── CrossSiteRequestError   cross_site_request    a browser's cross-site or form POST to reload
    ├── ModelFailedError            internal_error        the serving model failed on this request (500);
    │                                                     counted towards INFERENCE_REJECT_AFTER_FAILURES
    ├── UnavailableError            the service cannot answer now; retry later
    │   ├── NoModelError            no_model              nothing loaded yet
    │   └── OverloadedError         overloaded            too many requests, bodies or large decodes at once
    └── ModelError                  a swap was refused or failed; the old model keeps serving
        ├── InvalidAnnouncementError invalid_message      a routed message that is not a ModelAnnouncement
        ├── UnsafeModelPathError    unsafe_path           a path escaping INFERENCE_MODEL_ROOT
        ├── NoCurrentModelError     no_current_model      nothing installed (`current` missing)
        ├── ChecksumMismatchError   checksum_mismatch     model file differs from its announced sha256
        ├── InsufficientMemoryError insufficient_memory   two models cannot fit (preserve-availability)
        ├── FailingModelError       failing_requests      never raised to a client: the loader is told
        │                                                 when the serving model failed that many in a row
        ├── WorkerFailedError       worker_failed         INFERENCE_WORKERS > 1: a reload asked on a follower
        │                                                 got no answer from the leading worker
        └── ModelLoadError          load_failed           the runtime refused the model or its labels
            └── ModelLoadTimeoutError load_timeout        the load took over INFERENCE_LOAD_TIMEOUT_SECONDS
"""

from __future__ import annotations

from typing import ClassVar


class InferenceError(Exception):
    """Base of every error raised by `inference_module`."""

    code: ClassVar[str] = "internal_error"


class InputError(InferenceError):
    """The client sent something we cannot score."""

    code = "bad_request"


class EmptyBodyError(InputError):
    code = "empty_body"


class InvalidImageError(InputError):
    code = "invalid_image"


class ImageTooSmallError(InputError):
    code = "image_too_small"


class BodyTooLargeError(InputError):
    code = "payload_too_large"


class BodyTimeoutError(InputError):
    code = "body_timeout"


class ClientDisconnectedError(InputError):
    """Nobody is left to answer; counted apart from errors we sent."""

    code = "client_closed"


class TooManyPixelsError(InputError):
    code = "too_many_pixels"


class UnsupportedMediaTypeError(InputError):
    code = "unsupported_media_type"


class UnsupportedImageFormatError(InputError):
    code = "unsupported_image_format"


class AccessError(InferenceError):
    """Refused whatever the state: the caller is not allowed to change the module."""

    code = "forbidden"


class UnauthorizedError(AccessError):
    code = "unauthorized"


class CrossSiteRequestError(AccessError):
    code = "cross_site_request"


class ModelFailedError(InferenceError):
    """The serving model raised on a request (a runtime or model bug, not the client's image)."""

    def __init__(self, version: str, message: str) -> None:
        super().__init__(message)
        self.version = version


class UnavailableError(InferenceError):
    """Temporary: the client should retry after `Retry-After` seconds."""

    code = "unavailable"


class NoModelError(UnavailableError):
    code = "no_model"


class OverloadedError(UnavailableError):
    code = "overloaded"


class ModelError(InferenceError):
    """A model swap did not happen; whatever was serving before still serves."""

    code = "model_error"


class InvalidAnnouncementError(ModelError):
    code = "invalid_message"


class UnsafeModelPathError(ModelError):
    code = "unsafe_path"


class NoCurrentModelError(ModelError):
    code = "no_current_model"


class ChecksumMismatchError(ModelError):
    code = "checksum_mismatch"


class InsufficientMemoryError(ModelError):
    code = "insufficient_memory"


class ModelLoadError(ModelError):
    code = "load_failed"


class FailingModelError(ModelError):
    """The serving model failed INFERENCE_REJECT_AFTER_FAILURES requests in a row: told to the loader."""

    code = "failing_requests"


class WorkerFailedError(ModelError):
    """A follower could not get the leading worker's answer to a reload (a follower that ends or hangs
    during a swap is left out of it instead: not the model's fault)."""

    code = "worker_failed"


class ModelLoadTimeoutError(ModelLoadError):
    """The load was abandoned (its thread cannot be stopped; a model it builds late is closed)."""

    code = "load_timeout"
