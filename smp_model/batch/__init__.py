"""Batch photometry: the detection list (`items`), one detection's fit on a worker
(`worker`), the work folder and outputs (`work`) and the Dask run (`run`).
"""
