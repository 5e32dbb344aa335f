"""IoT Hub automatic deployments in the simulator: configurations, target conditions, layered merge."""
