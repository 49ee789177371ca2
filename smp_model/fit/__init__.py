"""Fitting a detection: the request (`request`), the immutable results (`results`), the
fitter (`photometry`, `DetectionPhotometry`), the binary position search (`binary_search`),
the one entry point the CLI, GUI and batch use (`measure`), and what is derived from a fit
(`chi2map`, `diagnostics`, `panels`).
"""
