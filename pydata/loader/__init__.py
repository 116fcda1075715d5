"""Loading batches: the Loader, torch DataLoader helpers and batch transforms
(:mod:`pydata.loader.transforms`)."""
