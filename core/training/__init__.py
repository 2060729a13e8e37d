"""Training: the loop, its stopping rule, losses, checkpoints, devices and several processes."""
