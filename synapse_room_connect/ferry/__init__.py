"""The ferry: reads connected rooms' timelines and sends their counterparts."""
