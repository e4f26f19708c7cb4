"""The bottom layer: what every other layer may use and which imports nothing of elfdd itself — the error types of
the exit-code contract, atomic file writes, content hashes, keyed artifacts and the plug-in registry."""
