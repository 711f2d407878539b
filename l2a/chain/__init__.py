"""l2a.chain"""
