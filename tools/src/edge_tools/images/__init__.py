"""Container images and the compose topology, built and run with podman or Docker."""
