"""Image attribution and model parsing (Vonderfecht & Liu, TMLR): which SR model made this image?

``prnu`` is the PRNU-style baseline (wavelet-denoiser residual, mean fingerprint per model),
``classifier`` a small ConvNeXt-style CNN trained from scratch, ``dataset`` the SR outputs of
held-out photos per zoo model, ``reports`` the accuracy tables, R(A, B) matrix and t-SNE.
"""
