"""glm layer of bids-glm."""
