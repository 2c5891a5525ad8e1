"""DeSRA repair (Sec. 4): pseudo ground truth, curated fine-tune sets, the fine-tune, evaluating a run."""
