"""MQTT 3.1.1 packet codec and the IoT Hub dialect broker."""
