"""infkit tune: search serving configurations under a latency budget."""
