"""Command-line options every `edge-model` command that reaches the hub or Blob Storage shares.

Connection strings default to the environment so they never need to appear on a command line.
"""

from __future__ import annotations

import argparse
import os


def _from_env(parser: argparse.ArgumentParser, flag: str, variable: str, text: str) -> None:
    parser.add_argument(flag, default=os.environ.get(variable), help=f"{text} (default: ${variable})")


def add_hub_options(parser: argparse.ArgumentParser, *, device: bool) -> None:
    _from_env(
        parser, "--hub-connection-string", "EDGE_HUB_CONNECTION_STRING", "IoT Hub service connection string"
    )
    _from_env(
        parser,
        "--hub-ca-file",
        "EDGE_HUB_CA_FILE",
        "CA bundle (PEM) for the hub's TLS certificate: a simulator or private endpoint; Azure needs none",
    )
    if device:
        parser.add_argument(
            "--device-id",
            default=os.environ.get("EDGE_DEVICE_ID"),
            help="device id (default: $EDGE_DEVICE_ID, else the connection string's DeviceId)",
        )
    parser.add_argument("--module", default="loader", help="loader module id (default: loader)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    _from_env(
        parser,
        "--storage-connection-string",
        "EDGE_STORAGE_CONNECTION_STRING",
        "Blob Storage connection string",
    )
    _from_env(
        parser,
        "--storage-ca-file",
        "EDGE_STORAGE_CA_FILE",
        "CA bundle (PEM) for the storage endpoint's TLS certificate: Azurite or a private endpoint; Azure "
        "needs none",
    )
