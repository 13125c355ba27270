"""Pieces of the training stage: data (segment table, views), batch samplers, monitors, checkpoints, loop.

The entry point is :func:`singer_ssl.training.run.train`; these modules are its parts, importable and
testable on their own.
"""
