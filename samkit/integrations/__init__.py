"""Integrations: YOLO pipelines (``samkit.integrations.yolo``) and Ray Data (``samkit.integrations.ray``)."""
