"""Ownership verification of SR models by critical-image fingerprints (Quan et al., ICCV 2023).

``critical`` extracts the critical image (Quan Eq. 1), ``features`` turns it into the 30-D colour +
LGP histogram, ``verify`` holds the chi-squared threshold, the verdict and the SQLite registry,
``attacks`` the pruning / int8 / fine-tuning robustness suite. Heavy imports stay inside functions.
"""
