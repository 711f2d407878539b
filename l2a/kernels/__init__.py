"""l2a.kernels"""
