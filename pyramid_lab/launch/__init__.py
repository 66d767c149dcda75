"""Launching: Hydra callbacks, the DDP relaunch inside sweeps, and sweeper plugins."""
