"""A run's files: the run record, checkpoints, atomic writes, the run lock and the TensorBoard tree."""
