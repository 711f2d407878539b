"""l2a.catalog"""
