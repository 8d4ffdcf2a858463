"""The `!connect` chat commands: parsing, answering, and the queue that answers each once."""
