"""PSF models and their rendering: the models a manifest names (`models`: Piff, the engine's
pixelised PSF, galsim profiles), the Piff file reader (`piff_io`) and the oversampled
renderer that draws shifted, pixel-integrated stamps fast (`oversampled`).
"""
