"""Sub-commands of ``hokensha-load``; each module is thin and calls ``hokensha_loader.core``."""
