"""Fleet rollout of one model in rings through IoT Hub layered deployments (docs/fleet.md)."""
