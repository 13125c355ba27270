"""The training stage: :class:`~singer_ssl.training.config.TrainConfig` (the only reader of its
``params.yaml`` sections) and :func:`singer_ssl.training.run.run` (paths from the caller); the other
modules are its parts (data, samplers, loop, monitors, checkpoints, optimiser, hyperparams), importable
and testable on their own.
"""
