"""The scene model: the exposures of a detection loaded for a fit (`exposures`), the grid of
point sources plus sky and target with its linear solve (`model`), and the memory a fit
needs (`memory`).
"""
