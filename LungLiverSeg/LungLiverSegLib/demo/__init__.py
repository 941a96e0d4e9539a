"""The built-in demo: a generated CT phantom, segmented and scored, with a volume table and an overlay.

May import every core layer below the front ends.
"""
