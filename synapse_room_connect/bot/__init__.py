"""The ferry bot: its account, its rooms, and every text it says."""
