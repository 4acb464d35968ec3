"""Local servers that speak the platforms' real protocols, for driving the real client code."""
