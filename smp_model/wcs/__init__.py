"""World coordinates: sky <-> CCD pixel transforms (`transforms`) and the DECam focal plane
(`decam`: which CCD and pixel sees a sky position).
"""
