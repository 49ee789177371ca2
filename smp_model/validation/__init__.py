"""Validation against known truths: injection-recovery of fluxes and their errors
(`injection`) and the PSF sub-pixel phase study (`psf_phase`).
"""
