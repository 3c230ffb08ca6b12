"""image layer of bids-glm."""
