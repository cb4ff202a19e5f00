"""Training: mesh and sharding rules, state, the jitted step, checkpoints, the loop."""
