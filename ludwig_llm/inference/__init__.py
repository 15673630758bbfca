"""Prediction: batched generation, label scoring for category outputs, and few-shot retrieval."""
