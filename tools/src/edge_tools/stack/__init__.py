"""The local stack: Azurite, the edgeHub simulator and both modules as processes (architecture §11)."""
