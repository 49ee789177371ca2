"""What a fit reads: the detection manifest (`manifest`), stamps (`stamps`), zeropoint
tables (`zeropoints`), the folder form of a detection (`folder`), exposure discovery in a
survey's exposure list (`discovery`) and stamp cutting from CCD images (`cutout`).
"""
