"""l2a.production"""
