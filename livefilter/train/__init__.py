"""Distillation of tiny CPU-fast students from the slow teacher generators.

Only ``model``, ``losses`` and ``distill`` import torch (the ``train`` extra); ``data``,
``teacher`` and ``fidelity`` need just numpy/OpenCV/onnxruntime so evaluation runs without it.
"""
