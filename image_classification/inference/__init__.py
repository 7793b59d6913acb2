"""Evaluation, benchmarking and prediction on trained models."""
