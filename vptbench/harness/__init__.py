"""Everything measured: seeds, devices, the training loop, metrics, and the suite runner."""
