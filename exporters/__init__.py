"""Checkpoint -> Triton model repository: task plugins, format plugins, the writer.

Heavy dependencies (torch, transformers, optimum) are imported only when an
export runs, so listing plugins or parsing configs stays fast.
"""
