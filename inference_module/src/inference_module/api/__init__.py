"""HTTP transport of the inference module."""

from inference_module.api.app import create_app

__all__ = ["create_app"]
