"""Compilation stage: backends behind one interface, found by name in an explicit registry."""
