"""The model runtime: architectures, checkpoints, the registry, downloads, ncnn import, inference."""
