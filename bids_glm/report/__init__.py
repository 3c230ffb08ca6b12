"""report layer of bids-glm."""
