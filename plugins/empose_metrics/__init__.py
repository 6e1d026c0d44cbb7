"""Evaluation metrics of EM-POSE (MPJPE, PA-MPJPE, MPJAE) plus jitter, as an empose plugin."""
