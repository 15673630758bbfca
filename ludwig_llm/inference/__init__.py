"""Prediction in this process: batched generation, label scoring for category outputs, teacher-forced evaluation."""
