"""Training: the LightningModule, its callbacks and the compile wrapper. Knows Lightning, not Hydra."""
