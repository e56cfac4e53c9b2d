"""Several ranks: gathering samples to rank 0, timing DDP's all-reduce."""
