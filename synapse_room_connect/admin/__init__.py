"""What a homeserver admin sees of connections and does on a room's behalf."""
