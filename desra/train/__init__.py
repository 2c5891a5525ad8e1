"""Training: the one GAN/L1 loop, losses, degradations, the model zoo and the derived parent."""
