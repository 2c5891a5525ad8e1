"""DeSRA detection (Sec. 3): the D map, semantic adjustment, morphology, regions, baselines, metrics."""
