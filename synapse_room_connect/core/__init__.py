"""The pure core: the protocol's rules as values, no Synapse and no I/O."""
