"""Command-line options every `edge-model` command that reaches the hub or Blob Storage shares.

Connection strings default to the environment so they never need to appear on a command line.
"""

from __future__ import annotations

import argparse
import os


def add_hub_options(parser: argparse.ArgumentParser, *, device: bool) -> None:
    parser.add_argument(
        "--hub-connection-string",
        default=os.environ.get("EDGE_HUB_CONNECTION_STRING"),
        help="IoT Hub service connection string (default: $EDGE_HUB_CONNECTION_STRING)",
    )
    parser.add_argument(
        "--hub-ca-file",
        default=os.environ.get("EDGE_HUB_CA_FILE"),
        help="CA bundle (PEM) for the hub's TLS certificate: a simulator or private endpoint; Azure needs "
        "none (default: $EDGE_HUB_CA_FILE)",
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
    parser.add_argument(
        "--storage-connection-string",
        default=os.environ.get("EDGE_STORAGE_CONNECTION_STRING"),
        help="Blob Storage connection string (default: $EDGE_STORAGE_CONNECTION_STRING)",
    )
    parser.add_argument(
        "--storage-ca-file",
        default=os.environ.get("EDGE_STORAGE_CA_FILE"),
        help="CA bundle (PEM) for the storage endpoint's TLS certificate: Azurite or a private endpoint; "
        "Azure needs none (default: $EDGE_STORAGE_CA_FILE)",
    )
