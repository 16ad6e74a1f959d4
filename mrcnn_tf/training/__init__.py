"""Training: optimizers and schedules, strategies, callbacks, and the ``model.fit`` driver."""
