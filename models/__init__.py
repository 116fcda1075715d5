"""Models and the training loop that consume pydata datasets (installed as ``pydata.models``)."""
